"""The TOTP second factor in the Account aggregate: enrolment needs the password again and a
first code, then every login needs a fresh code, and wrong or missing codes are throttled like
wrong passwords."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.envelope import encode
from services.auth import outbound
from services.auth.domain import (
    Account,
    AccountKind,
    AccountStatus,
    AuthRejected,
    Reason,
    Session,
)
from services.auth.domain.events import LoginFailed, SecondFactorEnabled
from services.auth.security import AccessRole, new_totp_secret, totp_code

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def parent() -> Account:
    return Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79161112233",
                   claimed_contract="40817810", password_hash="HASH")


def session_of(account: Account, now: datetime = T0, sid: str = "s0",
               code: str | None = None) -> Session:
    outcome = account.login(password_ok=True, now=now, session_id=sid,
                            refresh_token_hash=f"rt-{sid}", device="Phone", ip_hash="ip",
                            totp_code=code)
    assert outcome.session is not None, outcome.reply
    return outcome.session


def enrolled(now: datetime = T0) -> tuple[Account, str]:
    account = parent()
    session = session_of(account, now)
    secret = new_totp_secret()
    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=secret, now=now).ok
    assert account.confirm_totp(session=session, code=totp_code(secret, now), now=now).ok
    return account, secret


def wrong_code(secret: str, now: datetime) -> str:
    """Six digits that are none of the codes accepted at ``now`` (one step of drift allowed)."""
    accepted = {totp_code(secret, now + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in accepted)


def attempt(account: Account, now: datetime, code: str | None, *, password_ok: bool = True,
            sid: str = "s") -> tuple[Reason | None, Session | None]:
    outcome = account.login(password_ok=password_ok, now=now, session_id=sid,
                            refresh_token_hash=f"rt-{sid}", device="Phone", ip_hash="ip",
                            totp_code=code)
    return outcome.reply.reason, outcome.session


def test_enrolment_needs_the_current_password_and_a_first_code_before_it_protects_logins():
    account = parent()
    session = session_of(account)
    secret = new_totp_secret()
    refused = account.begin_totp_enrolment(session=session, current_password_ok=False,
                                           secret_b32=secret, now=T0)
    assert refused.rejection is Reason.INVALID_CREDENTIALS
    assert account.totp_secret is None and account.password_failures.count(T0) == 1

    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=secret, now=T0).ok
    assert account.totp_secret == secret and not account.totp_enabled
    assert attempt(account, T0, None)[1] is not None  # not confirmed: no code needed yet

    wrong = account.confirm_totp(session=session, code=wrong_code(secret, T0), now=T0)
    assert wrong.rejection is Reason.SECOND_FACTOR_INVALID and not account.totp_enabled
    assert account.confirm_totp(session=session, code=totp_code(secret, T0), now=T0).ok
    assert account.totp_enabled
    assert any(isinstance(e, SecondFactorEnabled) for e in account.pull_events())


def test_once_enrolled_a_login_without_a_code_or_with_a_wrong_one_is_refused_and_counted():
    account, secret = enrolled()
    later = T0 + timedelta(minutes=5)
    account.pull_events()
    assert attempt(account, later, None) == (Reason.SECOND_FACTOR_REQUIRED, None)
    assert attempt(account, later, wrong_code(secret, later)) == (
        Reason.SECOND_FACTOR_INVALID, None)
    assert attempt(account, later, "12ab56") == (Reason.SECOND_FACTOR_INVALID, None)
    assert account.password_failures.count(later) == 3
    assert [r.success for r in account.history()][:3] == [False, False, False]
    assert sum(isinstance(e, LoginFailed) for e in account.pull_events()) == 3

    reason, session = attempt(account, later, totp_code(secret, later))
    assert reason is None and session is not None
    assert account.password_failures.count(later) == 0  # success clears the window
    assert account.access_claims(session=session, children=(), now=later).sid == "s"


def test_a_wrong_password_is_refused_before_the_code_is_looked_at_and_does_not_spend_it():
    account, secret = enrolled()
    later = T0 + timedelta(minutes=5)
    code = totp_code(secret, later)
    assert attempt(account, later, code, password_ok=False) == (
        Reason.INVALID_CREDENTIALS, None)
    reason, session = attempt(account, later, code)
    assert reason is None and session is not None


def test_a_totp_code_works_once_even_within_its_own_30_seconds():
    account, secret = enrolled()
    later = T0 + timedelta(minutes=5)
    code = totp_code(secret, later)
    assert attempt(account, later, code, sid="a")[1] is not None
    assert attempt(account, later + timedelta(seconds=10), code, sid="b") == (
        Reason.SECOND_FACTOR_INVALID, None)
    nxt = later + timedelta(seconds=30)
    assert attempt(account, nxt, totp_code(secret, nxt), sid="c")[1] is not None


def test_guessing_codes_is_throttled_like_guessing_passwords():
    account, secret = enrolled()
    later = T0 + timedelta(minutes=5)
    for _ in range(5):
        assert attempt(account, later, wrong_code(secret, later))[0] is (
            Reason.SECOND_FACTOR_INVALID)
    # Five free failures; the next attempt must wait, even with the right code.
    assert attempt(account, later, totp_code(secret, later))[0] is Reason.LOGIN_DELAYED
    now = later
    for _ in range(95):
        now += timedelta(seconds=31)
        assert attempt(account, now, wrong_code(secret, now))[0] is (
            Reason.SECOND_FACTOR_INVALID)
    now += timedelta(seconds=31)
    assert attempt(account, now, totp_code(secret, now))[0] is Reason.LOGIN_RATE_LIMITED


def test_a_session_restricted_to_a_password_change_cannot_enrol():
    account = parent()
    account.must_change_password = True
    session = session_of(account)
    with pytest.raises(AuthRejected) as caught:
        account.begin_totp_enrolment(session=session, current_password_ok=True,
                                     secret_b32=new_totp_secret(), now=T0)
    assert caught.value.reason is Reason.PASSWORD_CHANGE_REQUIRED


def test_an_enrolment_retried_with_the_same_key_keeps_the_first_secret():
    account = parent()
    session = session_of(account)
    first, second = new_totp_secret(), new_totp_secret()
    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=first, now=T0, idempotency_key="k").ok
    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=second, now=T0, idempotency_key="k").ok
    assert account.totp_secret == first
    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=second, now=T0, idempotency_key="k2").ok
    assert account.totp_secret == second  # a new request starts over


def test_an_enabled_factor_cannot_be_enrolled_again_and_service_accounts_have_none():
    account, _ = enrolled()
    session = session_of(account, T0 + timedelta(minutes=1),
                         code=totp_code(account.totp_secret or "", T0 + timedelta(minutes=1)))
    with pytest.raises(AuthRejected) as caught:
        account.begin_totp_enrolment(session=session, current_password_ok=True,
                                     secret_b32=new_totp_secret(), now=T0)
    assert caught.value.reason is Reason.SECOND_FACTOR_ALREADY_ENABLED
    bank = Account.create_integrator(account_id="int-1", name="bank", client_secret_hash="H",
                                     scopes=["topups"], now=T0)
    with pytest.raises(AuthRejected) as caught:
        bank.begin_totp_enrolment(session=session_of(bank), current_password_ok=True,
                                  secret_b32=new_totp_secret(), now=T0)
    assert caught.value.reason is Reason.WRONG_ACCOUNT_KIND


def test_disabling_totp_needs_a_current_code():
    account, secret = enrolled()
    later = T0 + timedelta(minutes=1)
    wrong = wrong_code(secret, later)
    assert account.disable_totp(code=wrong, now=later).rejection is Reason.SECOND_FACTOR_INVALID
    assert account.disable_totp(code=totp_code(secret, later), now=later).ok
    assert not account.totp_enabled and account.totp_secret is None
    assert attempt(account, later, None)[1] is not None


def test_the_enrolment_reply_carries_the_secret_only_in_its_json_payload():
    account = parent()
    account.begin_totp_enrolment(session=session_of(account), current_password_ok=True,
                                 secret_b32=new_totp_secret(), now=T0)
    secret = account.totp_secret or ""
    reply = outbound.totp_enrolment("req-1", account)
    assert secret not in repr(reply) and secret not in str(reply)
    assert reply.secret.get_secret_value() == secret
    assert f"secret={secret}" in reply.otpauth_uri.get_secret_value()
    assert "SchoolCard:%2B79161112233" in reply.otpauth_uri.get_secret_value()
    assert secret in encode(reply).decode()  # what the owner's app receives

