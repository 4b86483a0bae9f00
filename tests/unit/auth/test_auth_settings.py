import pytest
from pydantic import ValidationError

from services.auth.settings import Settings
from services.runtime.tokens import generate_keypair

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("SCHOOLCARD_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("SCHOOLCARD_MONGO_URI", "mongodb://127.0.0.1:1")
    private, public = generate_keypair()
    monkeypatch.setenv("AUTH_PRIVATE_KEY", private)
    monkeypatch.setenv("SCHOOLCARD_AUTH_PUBLIC_KEY", public)
    monkeypatch.setenv("AUTH_PEPPER", "a-test-pepper-of-some-length")
    monkeypatch.delenv("AUTH_REFRESH_REUSE_GRACE_S", raising=False)
    return monkeypatch


def test_the_refresh_reuse_grace_is_30_seconds_unless_auth_refresh_reuse_grace_s_says_otherwise(
        env: pytest.MonkeyPatch) -> None:
    assert Settings().refresh_reuse_grace_s == 30
    env.setenv("AUTH_REFRESH_REUSE_GRACE_S", "0")
    assert Settings().refresh_reuse_grace_s == 0
    env.setenv("AUTH_REFRESH_REUSE_GRACE_S", "301")
    with pytest.raises(ValidationError):
        Settings()
