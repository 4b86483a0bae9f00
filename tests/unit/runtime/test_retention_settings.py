"""Every retention period is a setting of its service, read from the environment only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.access.settings import Settings as AccessSettings
from services.auth.settings import Settings as AuthSettings
from services.notify.settings import Settings as NotifySettings
from services.runtime.tokens import generate_keypair
from services.transit.settings import Settings as TransitSettings

pytestmark = pytest.mark.unit

RETENTION_VARS = ("ACCESS_ATTENDANCE_RETENTION_DAYS", "ACCESS_GATE_TAP_RETENTION_DAYS",
                  "TRANSIT_RIDE_RETENTION_DAYS", "NOTIFY_JOURNAL_RETENTION_DAYS",
                  "NOTIFY_JOURNEY_RETENTION_DAYS", "AUTH_SESSION_RETENTION_DAYS",
                  "AUTH_LOGIN_THROTTLE_RETENTION_DAYS")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("SCHOOLCARD_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("SCHOOLCARD_MONGO_URI", "mongodb://127.0.0.1:1")
    private, public = generate_keypair()
    monkeypatch.setenv("AUTH_PRIVATE_KEY", private)
    monkeypatch.setenv("SCHOOLCARD_AUTH_PUBLIC_KEY", public)
    monkeypatch.setenv("AUTH_PEPPER", "a-test-pepper-of-some-length")
    for name in RETENTION_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_history_is_kept_for_a_bounded_default_period_per_kind(env: pytest.MonkeyPatch) -> None:
    access, auth = AccessSettings(), AuthSettings()
    notify, transit = NotifySettings(), TransitSettings()
    assert (access.attendance_retention_days, access.gate_tap_retention_days) == (400, 90)
    assert transit.ride_retention_days == 90
    assert (notify.journal_retention_days, notify.journey_retention_days) == (180, 90)
    assert (auth.session_retention_days, auth.login_throttle_retention_days) == (30, 1)


def test_each_retention_period_follows_its_environment_variable(
        env: pytest.MonkeyPatch) -> None:
    for days, name in enumerate(RETENTION_VARS, start=2):
        env.setenv(name, str(days))
    access, auth = AccessSettings(), AuthSettings()
    notify, transit = NotifySettings(), TransitSettings()
    assert [access.attendance_retention_days, access.gate_tap_retention_days,
            transit.ride_retention_days, notify.journal_retention_days,
            notify.journey_retention_days, auth.session_retention_days,
            auth.login_throttle_retention_days] == [2, 3, 4, 5, 6, 7, 8]
    env.setenv("TRANSIT_RIDE_RETENTION_DAYS", "0")
    with pytest.raises(ValidationError):
        TransitSettings()
