"""The TOTP second factor in the Account aggregate: enrolment needs the password again and a
first code, then every login needs a fresh code, and wrong or missing codes are throttled like
wrong passwords."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts import auth as wire
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
from services.auth.domain.events import (
    LoginFailed,
    SecondFactorDisabled,
    SecondFactorEnabled,
    SessionsInvalidated,
)
from services.auth.security import AccessRole, new_totp_secret, totp_code
from services.runtime.authorization import authorize
from services.runtime.tokens import TokenError

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def parent(account_id: str = "acc-1") -> Account:
    return Account(account_id=account_id, kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79161112233",
                   claimed_contract="40817810", password_hash="HASH")


def session_of(account: Account, now: datetime = T0, sid: str = "s0",
               code: str | None = None) -> Session:
    outcome = account.login(password_ok=True, now=now, session_id=sid,
                            refresh_token_hash=f"rt-{sid}", device="Phone", ip_hash="ip",
                            totp_code=code)
    assert outcome.session is not None, outcome.reply
    return outcome.session


def enrolled(now: datetime = T0, account_id: str = "acc-1") -> tuple[Account, str]:
    account = parent(account_id)
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
    assert account.throttle.sources == {}  # success clears its source's window
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
    for _ in range(15):  # 20 an hour from one source
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
                                     scopes=["topups"], operator_id="izhevsk-gortrans", now=T0)
    with pytest.raises(AuthRejected) as caught:
        bank.begin_totp_enrolment(session=session_of(bank), current_password_ok=True,
                                  secret_b32=new_totp_secret(), now=T0)
    assert caught.value.reason is Reason.WRONG_ACCOUNT_KIND


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



# --- switching the factor off: by its owner, or reset by support ------------------------------

REASON = "Lost phone; identity checked by call-back and contract details, SUP-1042"


def signed_in(now: datetime = T0 + timedelta(minutes=1),
              account_id: str = "acc-1") -> tuple[Account, str, Session]:
    """An enrolled parent with a session opened with a code at ``now``."""
    account, secret = enrolled(account_id=account_id)
    session = session_of(account, now, sid="s1", code=totp_code(secret, now))
    account.pull_events()
    return account, secret, session


def disable(account: Account, session: Session, now: datetime, code: str | None, *,
            password_ok: bool = True, key: str | None = None) -> Reason | None:
    return account.disable_totp(session=session, current_password_ok=password_ok, code=code,
                                now=now, idempotency_key=key).rejection


def test_the_owner_switches_the_factor_off_only_with_the_password_and_a_current_code():
    account, secret, session = signed_in()
    now = T0 + timedelta(minutes=2)
    code = totp_code(secret, now)
    assert disable(account, session, now, code, password_ok=False) is (
        Reason.INVALID_CREDENTIALS)
    assert disable(account, session, now, None) is Reason.SECOND_FACTOR_REQUIRED
    assert disable(account, session, now, wrong_code(secret, now)) is (
        Reason.SECOND_FACTOR_INVALID)
    assert account.totp_enabled and account.totp_secret == secret
    assert account.password_failures.count(now) == 3  # the login's window
    assert account.pull_events() == []

    # The wrong password did not spend the code: it still switches the factor off.
    assert disable(account, session, now, code) is None
    assert not account.totp_enabled and account.totp_secret is None
    assert account.totp_last_step is None
    (event,) = account.pull_events()
    assert isinstance(event, SecondFactorDisabled)
    assert (event.via, event.by_account_id) == ("owner", None)
    assert session.is_active(now, account.session_epoch)  # the caller's session goes on
    assert attempt(account, now, None, sid="s2")[1] is not None  # the password alone now


def test_a_code_already_used_to_log_in_cannot_switch_the_factor_off():
    account, secret, session = signed_in()
    used = totp_code(secret, T0 + timedelta(minutes=1))
    assert disable(account, session, T0 + timedelta(minutes=1, seconds=5), used) is (
        Reason.SECOND_FACTOR_INVALID)
    assert account.totp_enabled


def test_failed_attempts_to_switch_off_are_throttled_together_with_failed_logins():
    account, secret, session = signed_in()
    now = T0 + timedelta(minutes=2)
    for _ in range(5):
        assert disable(account, session, now, wrong_code(secret, now)) is (
            Reason.SECOND_FACTOR_INVALID)
    # Five free failures: they count in the account's ceiling with failed logins, and the
    # next attempt to switch off from the session must wait (it is then not counted).
    outcome = account.disable_totp(session=session, current_password_ok=True,
                                   code=totp_code(secret, now), now=now)
    assert outcome.rejection is Reason.LOGIN_DELAYED and outcome.retry_after is not None
    assert account.password_failures.count(now) == 5 and account.totp_enabled
    now += timedelta(seconds=31)
    assert disable(account, session, now, totp_code(secret, now)) is None


def test_switching_off_retried_with_the_same_key_answers_the_first_outcome_once():
    account, secret, session = signed_in()
    now = T0 + timedelta(minutes=2)
    wrong = wrong_code(secret, now)
    assert disable(account, session, now, wrong, key="k1") is Reason.SECOND_FACTOR_INVALID
    assert disable(account, session, now, wrong, key="k1") is Reason.SECOND_FACTOR_INVALID
    assert account.password_failures.count(now) == 1  # the retry was not counted again
    code = totp_code(secret, now)
    assert disable(account, session, now, code, key="k2") is None
    assert disable(account, session, now, code, key="k2") is None  # not "not enabled"
    assert sum(isinstance(e, SecondFactorDisabled) for e in account.pull_events()) == 1
    with pytest.raises(AuthRejected) as caught:
        disable(account, session, now, code, key="k3")
    assert caught.value.reason is Reason.SECOND_FACTOR_NOT_ENABLED


def test_switching_off_needs_a_full_session_of_the_same_account():
    account, secret, session = signed_in()
    now = T0 + timedelta(minutes=2)
    with pytest.raises(AuthRejected) as caught:
        disable(account, session_of(parent("acc-2"), now, sid="x"), now, totp_code(secret, now))
    assert caught.value.reason is Reason.SESSION_NOT_FOUND
    account.must_change_password = True
    restricted = session_of(account, now, sid="s2", code=totp_code(secret, now))
    with pytest.raises(AuthRejected) as caught:
        disable(account, restricted, now + timedelta(seconds=30),
                totp_code(secret, now + timedelta(seconds=30)))
    assert caught.value.reason is Reason.PASSWORD_CHANGE_REQUIRED
    account.log_out_everywhere(now)
    with pytest.raises(AuthRejected) as caught:
        disable(account, session, now, totp_code(secret, now))
    assert caught.value.reason is Reason.SESSION_REVOKED
    assert account.totp_enabled and account.password_failures.count(now) == 0


def test_support_resets_a_lost_factor_ends_every_session_and_reopens_the_login_at_once():
    account, _secret, session = signed_in()
    now = T0 + timedelta(minutes=2)
    for _ in range(6):  # the parent without the phone keeps trying
        attempt(account, now, None)
    assert attempt(account, now, None)[0] is Reason.LOGIN_DELAYED
    account.pull_events()

    outcome = account.reset_second_factor(by_account_id="acc-support", reason=f"  {REASON} ",
                                          now=now, idempotency_key="r1")
    assert outcome.ok
    assert not account.totp_enabled and account.totp_secret is None
    assert account.password_failures.count(now) == 0
    (audit,) = account.factor_resets
    assert (audit.at, audit.by_account_id, audit.reason) == (now, "acc-support", REASON)
    disabled, invalidated = account.pull_events()
    assert isinstance(disabled, SecondFactorDisabled)
    assert (disabled.via, disabled.by_account_id) == ("support", "acc-support")
    assert isinstance(invalidated, SessionsInvalidated)
    assert (invalidated.reason, invalidated.kept_session_id) == ("second_factor_reset", None)
    assert REASON not in repr(disabled) + repr(invalidated) + repr(account)
    with pytest.raises(AuthRejected) as caught:
        session.require_active(now, account.session_epoch)
    assert caught.value.reason is Reason.SESSION_REVOKED
    assert attempt(account, now, None, sid="s2")[1] is not None  # password alone, no wait


def test_a_support_reset_needs_a_real_reason_a_parent_and_an_enabled_factor():
    account, _secret, _session = signed_in()
    now = T0 + timedelta(minutes=2)
    epoch = account.session_epoch
    for reason in ("", "   ", "lost   it", "\n\t phone \n"):
        with pytest.raises(AuthRejected) as caught:
            account.reset_second_factor(by_account_id="acc-support", reason=reason, now=now)
        assert caught.value.reason is Reason.RESET_REASON_REQUIRED
    assert account.totp_enabled and account.session_epoch == epoch
    assert account.factor_resets == [] and account.pull_events() == []

    staff = Account.create_staff(account_id="acc-staff", role=AccessRole.TEACHER,
                                 school_id="izh-school-42", initial_password_hash="H", now=T0,
                                 username="teacher.one")
    plain = parent()
    closed, _ = enrolled()
    closed.close(now)
    for target, reason in ((staff, Reason.WRONG_ACCOUNT_KIND),
                           (plain, Reason.SECOND_FACTOR_NOT_ENABLED),
                           (closed, Reason.ACCOUNT_CLOSED)):
        with pytest.raises(AuthRejected) as caught:
            target.reset_second_factor(by_account_id="acc-support", reason=REASON, now=now)
        assert caught.value.reason is reason


def test_a_support_reset_retried_with_the_same_key_is_applied_once():
    account, _secret, _session = signed_in()
    now = T0 + timedelta(minutes=2)
    for _ in range(2):
        assert account.reset_second_factor(by_account_id="acc-support", reason=REASON, now=now,
                                           idempotency_key="r1").ok
    assert len(account.factor_resets) == 1
    assert sum(isinstance(e, SecondFactorDisabled) for e in account.pull_events()) == 1
    with pytest.raises(AuthRejected) as caught:  # the same key from another support account
        account.reset_second_factor(by_account_id="acc-other", reason=REASON, now=now,
                                    idempotency_key="r1")
    assert caught.value.reason is Reason.IDEMPOTENCY_KEY_REUSED


def test_the_reset_audit_is_stored_and_dropped_with_the_rest_when_the_account_closes():
    account, _secret, _session = signed_in()
    now = T0 + timedelta(minutes=2)
    account.reset_second_factor(by_account_id="acc-support", reason=REASON, now=now)
    loaded = Account.from_doc(account.to_doc())
    assert loaded.factor_resets == account.factor_resets
    assert Account.from_doc({k: v for k, v in account.to_doc().items()
                             if k != "factor_resets"}).factor_resets == []  # older documents
    loaded.close(now)
    assert loaded.factor_resets == []


def test_both_ways_of_switching_off_reach_the_wire_as_one_event_without_the_reason():
    owner, secret, session = signed_in(account_id="acc_owner0001")
    now = T0 + timedelta(minutes=2)
    disable(owner, session, now, totp_code(secret, now))
    helped, _secret, _session = signed_in(account_id="acc_helped0001")
    helped.reset_second_factor(by_account_id="acc_support0001", reason=REASON, now=now)
    wired = outbound.to_wire(owner.pull_events() + helped.pull_events())
    # The support reset also ended every session of the parent (its own event).
    assert [(m.account_id, m.session_id, m.reason) for _t, _k, m, _id in wired
            if isinstance(m, wire.SessionEnded)] == [
        ("acc_helped0001", None, "second_factor_reset")]
    wired = [w for w in wired if not isinstance(w[2], wire.SessionEnded)]
    messages = [m for _t, _k, m, _id in wired]
    assert [t for t, _k, _m, _id in wired] == ["auth.events.v1", "auth.events.v1"]
    assert all(isinstance(m, wire.SecondFactorDisabled) for m in messages)
    assert [(m.account_id, m.by_support) for m in messages  # type: ignore[attr-defined]
            ] == [("acc_owner0001", False), ("acc_helped0001", True)]
    assert all(REASON not in encode(m).decode() for _t, _k, m, _id in wired)
    again = outbound.to_wire([SecondFactorDisabled(occurred_at=now,
                                                   account_id="acc_owner0001")])
    assert again[0][3] == wired[0][3]  # a re-emitted fact keeps its message id


def test_only_support_may_reset_a_second_factor():
    def claims(role: wire.Role) -> wire.AccessTokenClaims:
        return wire.AccessTokenClaims(sub="acc_support0001", sid="s", role=role, iat=0,
                                      exp=300, jti="j")

    authorize(claims(wire.Role.SUPPORT), "reset_second_factor")
    for role in set(wire.Role) - {wire.Role.SUPPORT}:
        with pytest.raises(TokenError) as caught:
            authorize(claims(role), "reset_second_factor")
        assert caught.value.code == "forbidden"
