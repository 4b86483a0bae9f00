"""Access tokens name their signing key (``kid``) and the services they are meant for
(``aud``): a key the verifier does not hold is refused, two keys verify during a rotation, a
service not in the audience refuses the token; auth starts only with a pepper and a signing key
its verifiers know."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import jwt
import pytest
from pydantic import ValidationError

from contracts.auth import ChildGrant, Role
from contracts.envelope import Envelope
from contracts.types import GuardianRole
from services.auth.settings import Settings as AuthSettings
from services.runtime.authorization import audience
from services.runtime.consumer import Inbound
from services.runtime.service import Runtime
from services.runtime.settings import InfraSettings, settings_problems
from services.runtime.tokens import (
    TokenError,
    generate_keypair,
    issue_access_token,
    key_id,
    public_keys,
    verify_access_token,
)

pytestmark = pytest.mark.unit

OLD_PRIVATE, OLD_PUBLIC = generate_keypair()
NEW_PRIVATE, NEW_PUBLIC = generate_keypair()
INFRA = {"kafka_bootstrap": "fake-broker:9092", "mongo_uri": "mongodb://fake-mongo"}


def token(private: str = OLD_PRIVATE, role: Role = Role.PARENT, **claims: object) -> str:
    return issue_access_token(private, account_id="acc_12345678", session_id="s1", role=role,
                              **claims)  # type: ignore[arg-type]


def refusal(token: str, keys: str, service: str = "wallet") -> str:
    with pytest.raises(TokenError) as refused:
        verify_access_token(token, keys, audience=service)
    return refused.value.code


# --- kid ----------------------------------------------------------------------------------------

def test_the_header_names_the_signing_key_by_the_thumbprint_of_its_public_half():
    [(kid, key)] = public_keys(OLD_PUBLIC).items()
    assert kid == key_id(key) and len(kid) == 43
    assert jwt.get_unverified_header(token())["kid"] == kid
    assert kid != next(iter(public_keys(NEW_PUBLIC)))


def test_a_token_signed_by_a_key_the_service_does_not_hold_is_refused_as_unknown_key():
    stranger, _ = generate_keypair()
    assert refusal(token(stranger), OLD_PUBLIC) == "unknown_key"


def test_a_token_without_a_kid_or_with_a_kid_of_a_known_key_but_another_signature_is_refused():
    claims = jwt.decode(token(), options={"verify_signature": False})
    stranger, _ = generate_keypair()
    no_kid = jwt.encode(claims, stranger, algorithm="EdDSA")
    assert refusal(no_kid, OLD_PUBLIC) == "unknown_key"
    known_kid = next(iter(public_keys(OLD_PUBLIC)))
    forged = jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": known_kid})
    assert refusal(forged, OLD_PUBLIC) == "invalid_token"


def test_during_a_rotation_tokens_of_both_keys_pass_and_after_it_only_the_new_keys():
    during = f"{OLD_PUBLIC}\n{NEW_PUBLIC}"
    for private in (OLD_PRIVATE, NEW_PRIVATE):
        assert verify_access_token(token(private), during, audience="wallet").sub == \
            "acc_12345678"
    assert verify_access_token(token(NEW_PRIVATE), NEW_PUBLIC, audience="wallet")
    assert refusal(token(OLD_PRIVATE), NEW_PUBLIC) == "unknown_key"


def test_the_public_keys_setting_and_the_earlier_single_key_setting_verify_together(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SCHOOLCARD_AUTH_PUBLIC_KEYS", NEW_PUBLIC)
    monkeypatch.setenv("SCHOOLCARD_AUTH_PUBLIC_KEY", OLD_PUBLIC)
    keys = InfraSettings(**INFRA).verification_keys()  # type: ignore[arg-type]
    assert set(public_keys(keys)) == set(public_keys(f"{OLD_PUBLIC}{NEW_PUBLIC}"))
    monkeypatch.setenv("SCHOOLCARD_AUTH_PUBLIC_KEYS", "not a key")
    with pytest.raises(ValidationError, match="no PEM public key"):
        InfraSettings(**INFRA)  # type: ignore[arg-type]


# --- aud ----------------------------------------------------------------------------------------

def test_each_role_is_given_auth_the_gateway_and_the_services_whose_commands_it_may_send():
    everything = ("auth", "wallet", "access", "transit", "notify", "gateway")
    assert {role: audience(role) for role in Role} == {
        Role.PARENT: everything,
        Role.SUPPORT: everything,
        Role.SCHOOL_ADMIN: everything,
        Role.CANTEEN_OPERATOR: ("auth", "wallet", "gateway"),
        Role.TEACHER: ("auth", "access", "gateway"),
        Role.INTEGRATOR: ("auth", "transit", "gateway"),
    }
    assert jwt.decode(token(role=Role.TEACHER), options={"verify_signature": False})["aud"] == [
        "auth", "access", "gateway"]


def test_a_token_is_refused_by_a_service_its_audience_does_not_name():
    teacher = token(role=Role.TEACHER, school_id="izh-school-42")
    assert verify_access_token(teacher, OLD_PUBLIC, audience="access").role is Role.TEACHER
    assert refusal(teacher, OLD_PUBLIC, "wallet") == "wrong_audience"
    narrowed = token(audience=["auth", "wallet"])
    assert refusal(narrowed, OLD_PUBLIC, "transit") == "wrong_audience"
    claims = jwt.decode(token(), options={"verify_signature": False})
    del claims["aud"]
    kid = next(iter(public_keys(OLD_PUBLIC)))
    without = jwt.encode(claims, OLD_PRIVATE, algorithm="EdDSA", headers={"kid": kid})
    assert refusal(without, OLD_PUBLIC, "auth") == "wrong_audience"


def test_a_service_checks_its_own_name_against_the_audience():
    now = time.time()
    infra = InfraSettings(**INFRA, auth_public_key=OLD_PUBLIC)  # type: ignore[arg-type]

    def claims_at(service: str, bearer: str):  # type: ignore[no-untyped-def]
        rt = Runtime(service, SimpleNamespace(infra=infra),  # type: ignore[arg-type]
                     None, None, None)  # type: ignore[arg-type]
        envelope = Envelope(id="m1", source="test", type="x", time=datetime.now(UTC),
                            correlation_id="c1")
        return rt.claims(Inbound(None, envelope, "t", 0, 0, None, f"Bearer {bearer}"))

    parent = token(children=[ChildGrant(contract="40012345", role=GuardianRole.PRIMARY)],
                   now=now)
    assert all(claims_at(s, parent).sub == "acc_12345678"
               for s in ("auth", "wallet", "access", "transit", "notify"))
    canteen = token(role=Role.CANTEEN_OPERATOR, school_id="izh-school-42", now=now)
    assert claims_at("wallet", canteen).role is Role.CANTEEN_OPERATOR
    with pytest.raises(TokenError) as refused:
        claims_at("access", canteen)
    assert refused.value.code == "wrong_audience"


# --- auth's secrets -----------------------------------------------------------------------------

@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in {"SCHOOLCARD_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                        "SCHOOLCARD_MONGO_URI": "mongodb://127.0.0.1:1",
                        "SCHOOLCARD_AUTH_PUBLIC_KEY": OLD_PUBLIC,
                        "AUTH_PRIVATE_KEY": OLD_PRIVATE,
                        "AUTH_PEPPER": "a-pepper-of-sixteen-or-more"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SCHOOLCARD_AUTH_PUBLIC_KEYS", raising=False)
    return monkeypatch


def problems() -> str:
    with pytest.raises(ValidationError) as failed:
        AuthSettings()
    return settings_problems(failed.value, AuthSettings)


def test_auth_does_not_start_without_a_pepper_or_with_a_short_one(auth_env):
    assert AuthSettings().pepper_bytes() == b"a-pepper-of-sixteen-or-more"
    auth_env.delenv("AUTH_PEPPER")
    assert problems() == "AUTH_PEPPER: Field required"
    auth_env.setenv("AUTH_PEPPER", "too-short")
    assert problems() == "AUTH_PEPPER: must be at least 16 characters"


def test_auth_does_not_start_with_a_signing_key_its_verifiers_do_not_hold(auth_env):
    auth_env.setenv("AUTH_PRIVATE_KEY", NEW_PRIVATE)
    assert "is not in SCHOOLCARD_AUTH_PUBLIC_KEYS" in problems()
    auth_env.setenv("SCHOOLCARD_AUTH_PUBLIC_KEYS", NEW_PUBLIC)  # the rotation's first step
    assert AuthSettings().private_key.get_secret_value() == NEW_PRIVATE
    auth_env.setenv("AUTH_PRIVATE_KEY", "not-a-key")
    assert "AUTH_PRIVATE_KEY is not an Ed25519 private key" in problems()
