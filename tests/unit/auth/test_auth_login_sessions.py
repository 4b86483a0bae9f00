from datetime import UTC, datetime, timedelta

import pytest

from services.auth.domain import (
    Account,
    AccountKind,
    AccountStatus,
    AuthRejected,
    CodePurpose,
    DeviceProof,
    LoginOutcome,
    LoginReply,
    LoginThrottle,
    Reason,
    Session,
    active_sessions,
    log_in,
    login_gate_for_identifier,
    login_gate_for_unknown,
    login_unknown,
)
from services.auth.domain.events import (
    NewLoginDetected,
    RefreshTokenReuseDetected,
    SessionRevoked,
    SessionsInvalidated,
)
from services.auth.security import AccessRole, ChildClaim, ChildRole

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
PEPPER = b"pepper"


def parent() -> Account:
    return Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79161112233",
                   claimed_contract="40817810", password_hash="HASH")


def login(account: Account, ok: bool, now: datetime, sid: str = "s1",
          device: str = "Firefox/128 Linux") -> LoginReply:
    return account.login(password_ok=ok, now=now, session_id=sid, refresh_token_hash=f"rt-{sid}",
                         device=device, ip_hash="ip1").reply


def session_at(account: Account, now: datetime = T0) -> Session:
    outcome = account.login(password_ok=True, now=now, session_id="s1",
                            refresh_token_hash="rt-0", device="Phone", ip_hash="ip1")
    assert outcome.session is not None
    return outcome.session


def test_a_successful_login_starts_a_session_and_records_a_new_login_event() -> None:
    account = parent()
    outcome = account.login(password_ok=True, now=T0, session_id="s1",
                            refresh_token_hash="rt", device="Firefox", ip_hash="ip1")
    assert outcome.reply == LoginReply(ok=True, session_id="s1")
    assert outcome.session is not None and outcome.session.absolute_expires_at == T0 + timedelta(
        hours=12)
    events = [e for e in account.pull_events() if isinstance(e, NewLoginDetected)]
    assert events[0].device == "Firefox" and events[0].ip_hash == "ip1" and events[0].new_device
    # the same device name proves nothing: without a device token it is new again
    login(account, True, T0 + timedelta(minutes=1), sid="s2", device="Firefox")
    again = [e for e in account.pull_events() if isinstance(e, NewLoginDetected)]
    assert again[0].new_device
    assert [r.session_id for r in account.history()] == ["s2", "s1"]


def test_the_first_five_failures_cost_nothing_then_the_delay_doubles_up_to_30_seconds() -> None:
    account = parent()
    now = T0
    for _ in range(5):
        assert login(account, False, now).reason is Reason.INVALID_CREDENTIALS
    delays = []
    for _ in range(8):
        refused = account.login_gate(now)
        assert refused is not None and refused.reason is Reason.LOGIN_DELAYED
        assert refused.retry_after is not None
        delays.append(int(refused.retry_after.total_seconds()))
        now += refused.retry_after
        assert login(account, False, now).reason is Reason.INVALID_CREDENTIALS
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_150_wrong_passwords_in_an_hour_process_at_most_100_and_reset_lets_the_owner_in() -> None:
    account = parent()
    processed = 0
    for i in range(150):
        now = T0 + timedelta(seconds=24 * i)  # 150 attempts spread over one hour
        if account.login_gate(now) is None:
            processed += 1
        login(account, False, now)
    assert processed <= 100
    # Attack at the fastest allowed pace: the 101st processed attempt is refused unverified.
    account = parent()
    now = T0
    for _ in range(100):
        gate = account.login_gate(now)
        if gate is not None and gate.retry_after is not None:
            now += gate.retry_after
        assert login(account, False, now).reason is Reason.INVALID_CREDENTIALS
    capped = account.login_gate(now + timedelta(seconds=31))
    assert capped is not None and capped.reason is Reason.LOGIN_RATE_LIMITED
    refused = login(account, True, now + timedelta(seconds=31))  # even the right password waits
    assert not refused.ok and refused.reason is Reason.LOGIN_RATE_LIMITED
    # The documented way out: a password reset by SMS code clears the counter.
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=PEPPER, now=now)
    assert account.reset_password(code="482913", pepper=PEPPER, new_password="new tidy phrase",
                                  new_password_hash="HASH2", now=now + timedelta(seconds=40)).ok
    assert login(account, True, now + timedelta(seconds=41)).ok


def test_the_soft_lock_opens_by_itself_when_the_hour_rolls_over() -> None:
    account = parent()
    for i in range(100):
        account.password_failures.record_failure(T0 + timedelta(seconds=i))
    assert account.login_gate(T0 + timedelta(minutes=59)) is not None
    assert account.login_gate(T0 + timedelta(hours=1, seconds=1)) is None


def test_a_successful_login_clears_its_source_but_not_the_account_ceiling() -> None:
    account = parent()
    for i in range(4):
        login(account, False, T0 + timedelta(seconds=i))
    assert login(account, True, T0 + timedelta(seconds=5)).ok
    assert account.throttle.sources == {}
    # Shared with whoever else guesses: one success must not buy an attacker 100 more.
    assert account.password_failures.count(T0 + timedelta(seconds=5)) == 4


def test_login_replies_are_identical_for_unknown_identifiers_and_wrong_passwords() -> None:
    account, ghost = parent(), LoginThrottle()
    now = T0
    for _ in range(12):
        known_gate, unknown_gate = account.login_gate(now), login_gate_for_unknown(ghost, "", now)
        assert known_gate == unknown_gate
        if known_gate is None:
            assert login(account, False, now) == login_unknown(ghost, "", now)
        now += timedelta(seconds=3)


def test_pending_and_disabled_accounts_answer_like_a_wrong_password() -> None:
    pending = parent()
    pending.status = AccountStatus.PENDING
    assert login(pending, True, T0) == LoginReply(ok=False, reason=Reason.INVALID_CREDENTIALS)
    disabled = parent()
    disabled.disable(T0)
    assert login(disabled, True, T0) == LoginReply(ok=False, reason=Reason.INVALID_CREDENTIALS)


def test_a_session_idle_for_19_59_passes_and_for_20_01_is_refused() -> None:
    account = parent()
    session = session_at(account)
    session.refresh(presented_token_hash="rt-0", new_token_hash="rt-1",
                    now=T0 + timedelta(minutes=19, seconds=59), account_epoch=0)
    later = T0 + timedelta(minutes=19, seconds=59) + timedelta(minutes=20, seconds=1)
    with pytest.raises(AuthRejected) as caught:
        session.refresh(presented_token_hash="rt-1", new_token_hash="rt-2", now=later,
                        account_epoch=0)
    assert caught.value.reason is Reason.SESSION_IDLE_EXPIRED


def test_using_a_session_extends_the_idle_deadline_but_never_past_12_hours() -> None:
    account = parent()
    session = session_at(account)
    now, token = T0, "rt-0"
    for n in range(1, 40):
        now += timedelta(minutes=19)
        if now >= T0 + timedelta(hours=12):
            break
        session.refresh(presented_token_hash=token, new_token_hash=f"rt-{n}", now=now,
                        account_epoch=0)
        token = f"rt-{n}"
    assert session.idle_expires_at == T0 + timedelta(hours=12)
    with pytest.raises(AuthRejected) as caught:
        session.refresh(presented_token_hash=token, new_token_hash="rt-x",
                        now=T0 + timedelta(hours=12), account_epoch=0)
    assert caught.value.reason is Reason.SESSION_LIFETIME_EXPIRED


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family() -> None:
    account = parent()
    session = session_at(account)
    session.refresh(presented_token_hash="rt-0", new_token_hash="rt-1",
                    now=T0 + timedelta(minutes=1), account_epoch=0)
    stolen = session.refresh(presented_token_hash="rt-0", new_token_hash="rt-evil",
                             now=T0 + timedelta(minutes=2), account_epoch=0)
    assert stolen.rejection is Reason.REFRESH_TOKEN_REUSED
    assert any(isinstance(e, RefreshTokenReuseDetected) for e in session.pull_events())
    with pytest.raises(AuthRejected) as caught:
        session.refresh(presented_token_hash="rt-1", new_token_hash="rt-2",
                        now=T0 + timedelta(minutes=3), account_epoch=0)
    assert caught.value.reason is Reason.SESSION_REVOKED


def test_a_refused_refresh_asked_again_with_the_same_key_gets_the_same_refusal() -> None:
    session = session_at(parent())
    session.refresh(presented_token_hash="rt-0", new_token_hash="rt-1",
                    now=T0 + timedelta(minutes=1), account_epoch=0)
    first = session.refresh(presented_token_hash="rt-0", new_token_hash="rt-2",
                            now=T0 + timedelta(minutes=5), account_epoch=0, idempotency_key="k")
    again = session.refresh(presented_token_hash="rt-0", new_token_hash="rt-3",
                            now=T0 + timedelta(minutes=5), account_epoch=0, idempotency_key="k")
    assert first.rejection is again.rejection is Reason.REFRESH_TOKEN_REUSED
    assert again.replayed and session.revoke_reason == "refresh_token_reused"


def test_an_unknown_refresh_token_is_refused_without_revoking() -> None:
    session = session_at(parent())
    with pytest.raises(AuthRejected) as caught:
        session.refresh(presented_token_hash="forged", new_token_hash="rt-1", now=T0,
                        account_epoch=0)
    assert caught.value.reason is Reason.REFRESH_TOKEN_INVALID and session.revoked_at is None


def test_logout_ends_one_session_and_log_out_everywhere_ends_them_all() -> None:
    account = parent()
    a = account.login(password_ok=True, now=T0, session_id="a", refresh_token_hash="ra",
                      device="A", ip_hash="i").session
    b = account.login(password_ok=True, now=T0, session_id="b", refresh_token_hash="rb",
                      device="B", ip_hash="i").session
    assert a is not None and b is not None
    assert [v.session_id for v in active_sessions([a, b], T0, account.session_epoch)] == ["a", "b"]
    assert a.revoke(T0) and not a.revoke(T0)
    assert [v.session_id for v in active_sessions([a, b], T0, account.session_epoch)] == ["b"]
    account.log_out_everywhere(T0)
    assert active_sessions([a, b], T0, account.session_epoch) == []


def test_a_password_change_keeps_the_current_session_and_ends_the_others() -> None:
    account = parent()
    current = session_at(account)
    other = account.login(password_ok=True, now=T0, session_id="s2", refresh_token_hash="r2",
                          device="B", ip_hash="i").session
    assert other is not None
    outcome = account.change_password(current_password_ok=True, new_password="fresh kettle song",
                                      new_password_hash="HASH2",
                                      new_password_matches_current=False, session=current,
                                      now=T0 + timedelta(minutes=1))
    assert outcome.ok and account.password_hash == "HASH2"
    assert current.is_active(T0 + timedelta(minutes=1), account.session_epoch)
    assert not other.is_active(T0 + timedelta(minutes=1), account.session_epoch)
    invalidated = [e for e in account.pull_events() if isinstance(e, SessionsInvalidated)]
    assert invalidated[-1].kept_session_id == current.session_id


def test_a_wrong_current_password_blocks_the_change_and_counts_as_a_failure() -> None:
    account = parent()
    session = session_at(account)
    outcome = account.change_password(current_password_ok=False, new_password="fresh kettle song",
                                      new_password_hash="H2", new_password_matches_current=False,
                                      session=session, now=T0)
    assert outcome.rejection is Reason.INVALID_CREDENTIALS and account.password_hash == "HASH"
    assert account.password_failures.count(T0) == 1


def test_a_reset_ends_every_session() -> None:
    account = parent()
    session = session_at(account)
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=PEPPER, now=T0)
    assert account.reset_password(code="482913", pepper=PEPPER, new_password="new tidy phrase",
                                  new_password_hash="H2", now=T0).ok
    assert session.inactive_reason(T0, account.session_epoch) is Reason.SESSION_REVOKED
    again = account.reset_password(code="482913", pepper=PEPPER, new_password="another phrase",
                                   new_password_hash="H3", now=T0)
    assert again.rejection is Reason.CODE_INVALID and account.password_hash == "H2"


def test_a_reset_with_a_bad_new_password_does_not_spend_the_code() -> None:
    account = parent()
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=PEPPER, now=T0)
    with pytest.raises(AuthRejected) as caught:
        account.reset_password(code="482913", pepper=PEPPER, new_password="x40817810x",
                               new_password_hash="H2", now=T0)
    assert caught.value.reason is Reason.PASSWORD_CONTAINS_CONTRACT
    assert account.reset_password(code="482913", pepper=PEPPER, new_password="new tidy phrase",
                                  new_password_hash="H2", now=T0).ok


def test_a_birth_date_initial_password_must_be_changed_at_first_login() -> None:
    account = Account.provision_for_contract(account_id="acc-9", contract_number="40817810",
                                             initial_password_hash="HASH-OF-12052015", now=T0)
    outcome = account.login(password_ok=True, now=T0, session_id="s", refresh_token_hash="r",
                            device="D", ip_hash="i")
    assert outcome.reply.password_change_required and outcome.session is not None
    with pytest.raises(AuthRejected) as caught:
        account.access_claims(session=outcome.session, children=(), now=T0)
    assert caught.value.reason is Reason.PASSWORD_CHANGE_REQUIRED
    assert account.change_password(current_password_ok=True, new_password="fresh kettle song",
                                   new_password_hash="H2", new_password_matches_current=False,
                                   session=outcome.session, now=T0).ok
    claims = account.access_claims(
        session=outcome.session, children=(ChildClaim("40817810", ChildRole.PRIMARY),), now=T0)
    assert claims.sub == "acc-9" and claims.sid == "s" and claims.role is AccessRole.PARENT
    assert not account.must_change_password


def test_session_and_account_documents_round_trip() -> None:
    account = parent()
    session = session_at(account)
    login(account, False, T0 + timedelta(seconds=1), sid="x")
    session.refresh(presented_token_hash="rt-0", new_token_hash="rt-1", now=T0,
                    account_epoch=0, idempotency_key="k")
    restored = Session.from_doc(session.to_doc())
    assert restored.to_doc() == session.to_doc()
    assert Account.from_doc(account.to_doc()).to_doc() == account.to_doc()
    naive = {**session.to_doc(), "created_at": T0.replace(tzinfo=None)}
    assert Session.from_doc(naive).created_at == T0


def attempt(account: Account | None, ghost: LoginThrottle | None, ok: bool,
            now: datetime) -> LoginOutcome:
    return log_in(account=account, unknown_throttle=ghost, password_ok=ok, now=now,
                  session_id="s1", refresh_token_hash="rt-1", device="Phone", ip_hash="ip1")


def test_a_login_naming_no_account_is_refused_and_counted_like_a_wrong_password() -> None:
    ghost = LoginThrottle()
    outcome = attempt(None, ghost, True, T0)
    assert outcome.session is None
    assert outcome.reply == attempt(parent(), None, False, T0).reply
    assert ghost.failures(T0) == 1


def test_a_login_naming_an_account_with_the_right_password_starts_its_session() -> None:
    account, ghost = parent(), LoginThrottle()
    outcome = attempt(account, ghost, True, T0)
    assert outcome.session is not None and outcome.session.account_id == "acc-1"
    assert outcome.reply.ok and ghost.failures(T0) == 0


def test_the_gate_before_verification_refuses_known_and_unknown_identifiers_alike() -> None:
    account, ghost = parent(), LoginThrottle()
    for _ in range(5):
        attempt(account, None, False, T0)
        attempt(None, ghost, False, T0)
    now = T0 + timedelta(milliseconds=500)
    refused = login_gate_for_identifier(account, None, now)
    assert refused is not None and not refused.ok
    assert login_gate_for_identifier(None, ghost, now) == refused
    assert login_gate_for_identifier(parent(), None, now) is None


def test_a_login_naming_no_account_without_its_throttle_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        attempt(None, None, False, T0)
    with pytest.raises(ValueError):
        login_gate_for_identifier(None, None, T0)


# --- sessions of a trusted device -----------------------------------------------------------

def on_device(account: Account, sid: str, now: datetime, *, token: str,
              presented: str | None = None) -> Session:
    """A login from the device whose token hash is ``presented`` (None: a new device, trusted
    under ``token``), as the handler builds it."""
    proof = DeviceProof(presented_hash=presented, new_device_id=f"dev-{token}",
                        new_token_hash=token)
    session = account.login(password_ok=True, now=now, session_id=sid,
                            refresh_token_hash=f"rt-{sid}", device=f"UA {sid}", ip_hash="ip1",
                            device_proof=proof).session
    assert session is not None
    return session


def revoked_reasons(session: Session) -> list[str]:
    return [e.reason for e in session.pull_events() if isinstance(e, SessionRevoked)]


def test_revoking_device_a_ends_as_sessions_and_leaves_bs_signed_in() -> None:
    account = parent()
    a1 = on_device(account, "a1", T0, token="tok-a")
    b = on_device(account, "b", T0 + timedelta(minutes=1), token="tok-b")
    a2 = on_device(account, "a2", T0 + timedelta(minutes=2), token="tok-x", presented="tok-a")
    a2.refresh(presented_token_hash="rt-a2", new_token_hash="rt-a2-1",
               now=T0 + timedelta(minutes=3), account_epoch=account.session_epoch)
    assert (a1.device_id, b.device_id, a2.device_id) == ("dev-tok-a", "dev-tok-b", "dev-tok-a")
    for s in (a1, b, a2):
        s.pull_events()
    later = T0 + timedelta(minutes=4)

    ended = account.revoke_trusted_device("dev-tok-a", [a1, b, a2], later)

    assert ended == [a1, a2]
    assert [revoked_reasons(s) for s in (a1, b, a2)] == [["device_revoked"], [],
                                                         ["device_revoked"]]
    assert [v.session_id for v in active_sessions([a1, b, a2], later,
                                                   account.session_epoch)] == ["b"]
    with pytest.raises(AuthRejected) as refused:
        a2.refresh(presented_token_hash="rt-a2-1", new_token_hash="rt-a2-2", now=later,
                   account_epoch=account.session_epoch)
    assert refused.value.reason is Reason.SESSION_REVOKED
    b.refresh(presented_token_hash="rt-b", new_token_hash="rt-b-1", now=later,
              account_epoch=account.session_epoch)
    assert [d.device_id for d in account.trusted_devices.listed()] == ["dev-tok-b"]


def test_a_retried_device_revocation_ends_nothing_more_and_changes_nothing() -> None:
    account = parent()
    a = on_device(account, "a", T0, token="tok-a")
    b = on_device(account, "b", T0, token="tok-b")
    later = T0 + timedelta(minutes=1)
    assert account.revoke_trusted_device("dev-tok-a", [a, b], later,
                                         idempotency_key="rv-1") == [a]
    a.pull_events()
    stored = (account.to_doc(), a.to_doc(), b.to_doc())

    # the client retries the request whose reply it lost: answered, nothing more happens
    assert account.revoke_trusted_device("dev-tok-a", [a, b], later + timedelta(seconds=5),
                                         idempotency_key="rv-1") == []
    assert (account.to_doc(), a.to_doc(), b.to_doc()) == stored
    assert revoked_reasons(a) == revoked_reasons(b) == []
    assert a.revoke_reason == "device_revoked" and a.revoked_at == later
    # another request for the gone device, and the same key for another device, are refused
    with pytest.raises(AuthRejected) as gone:
        account.revoke_trusted_device("dev-tok-a", [a, b], later, idempotency_key="rv-2")
    assert gone.value.reason is Reason.DEVICE_NOT_FOUND
    with pytest.raises(AuthRejected) as reused:
        account.revoke_trusted_device("dev-tok-b", [a, b], later, idempotency_key="rv-1")
    assert reused.value.reason is Reason.IDEMPOTENCY_KEY_REUSED
    assert (account.to_doc(), a.to_doc(), b.to_doc()) == stored
    assert b.is_active(later, account.session_epoch)


def test_a_device_revocation_leaves_sessions_already_over_and_stored_before_as_they_are() -> None:
    account = parent()
    logged_out = on_device(account, "out", T0, token="tok-a")
    logged_out.revoke(T0 + timedelta(minutes=1), "logout")
    before_epoch = on_device(account, "old", T0, token="tok-x", presented="tok-a")
    account.log_out_everywhere(T0 + timedelta(minutes=2))
    idle = on_device(account, "idle", T0 + timedelta(minutes=3), token="tok-y", presented="tok-a")
    legacy = on_device(account, "legacy", T0 + timedelta(minutes=40), token="tok-z",
                       presented="tok-a")
    legacy.device_id = None  # as read from a document stored before sessions kept it
    assert Session.from_doc({k: v for k, v in legacy.to_doc().items()
                             if k != "device_id"}).device_id is None
    for s in (logged_out, before_epoch, idle, legacy):
        s.pull_events()
    later = T0 + timedelta(minutes=41)  # idle's 20 minutes are over, the sweep has not run

    assert account.revoke_trusted_device("dev-tok-a", [logged_out, before_epoch, idle, legacy],
                                         later) == []

    assert logged_out.revoke_reason == "logout"
    assert before_epoch.revoked_at is idle.revoked_at is legacy.revoked_at is None
    assert legacy.is_active(later, account.session_epoch)
    assert idle.expire(later) and revoked_reasons(idle) == ["expired"]


def test_the_session_list_names_each_sessions_trusted_device_as_the_owner_named_it() -> None:
    account = parent()
    phone = on_device(account, "p", T0, token="tok-p")
    laptop = on_device(account, "l", T0 + timedelta(minutes=1), token="tok-l")
    legacy = on_device(account, "x", T0 + timedelta(minutes=2), token="tok-x")
    legacy.device_id = None
    account.trusted_devices.rename("dev-tok-p", "Телефон мамы")
    now = T0 + timedelta(minutes=3)
    listed = active_sessions([phone, laptop, legacy], now, account.session_epoch,
                             account.trusted_devices)
    assert [(v.session_id, v.device_id, v.device_name) for v in listed] == [
        ("x", None, None), ("l", "dev-tok-l", "UA l"), ("p", "dev-tok-p", "Телефон мамы")]
    assert Session.from_doc(phone.to_doc()).device_id == "dev-tok-p"
