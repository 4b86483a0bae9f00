"""auth's handlers over the in-memory fakes: each handler's reply (or error code), the events
it emits, the state it saves, and what a refusal keeps (a failed attempt is counted, then
refused). Tokens are signed by the handlers with the fake runtime's key and verified for real.
Passwords are hashed for real (argon2, ~50 ms each): the flows are driven as a client does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import auth as cmd
from contracts import integrations as integ
from contracts.envelope import ErrorReply
from contracts.notify import OneTimeCodeRequested
from services.auth import app
from services.auth.handlers import Handlers
from services.auth.security import totp_code
from services.auth.settings import Settings
from services.runtime.consumer import Rejected
from services.runtime.tokens import generate_keypair, verify_access_token
from tests.unit.fakes import FakeRuntime, plain_dialect

APP_CLIENT = "apps.replies.cabinet-test.v1"
"""The app's own reply topic: logins and refreshes are answered there only."""

pytestmark = pytest.mark.unit

NOW = datetime(2026, 9, 1, 6, 0, tzinfo=UTC)
SCHOOL = "izh-school-42"
CONTRACT = "40012345"
BORN = date(2014, 3, 8)
PHONE = "+79120000001"
PASSWORD = "otter river paddles 42"
NEW_PASSWORD = "heron lake glides 77"
_KEYS = generate_keypair()


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def _auth() -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("auth", Settings, now=NOW, keypair=_KEYS, private_key=_KEYS[0],
                     pepper="unit-test-pepper")
    return rt, Handlers(rt)


def _req(rt: FakeRuntime, message: Any, *, key: str, token: str | None = None) -> Any:
    """A request from an app, answered on the app reply topic (with a token or without)."""
    return rt.inbound(message, key=key, token=token, reply_to=APP_CLIENT)


def _forget(rt: FakeRuntime) -> None:
    """Start the next assertions from here: what was sent so far is set aside."""
    rt.fake_uow.sent.clear()
    rt.fake_uow.replies.clear()


def _card(contract: str = CONTRACT, student: str = "stu-000451", *,
          birth_date_password: bool = False) -> integ.CardIssued:
    return integ.CardIssued(contract=contract, card_uid="04A2B3C4D5E6F7", school_id=SCHOOL,
                            school_tz="Europe/Samara", student_id=student, class_name="5Б",
                            birth_date=BORN, initial_password_is_birth_date=birth_date_password,
                            issued_at=NOW - timedelta(days=1))


def _code(rt: FakeRuntime, phone: str) -> str:
    """The latest code auth asked notify to send to ``phone``."""
    sent = [m for m in rt.emitted(OneTimeCodeRequested) if m.phone == phone]
    assert sent, f"no code was sent to {phone}"
    return sent[-1].code.get_secret_value()


def _tokens(rt: FakeRuntime) -> cmd.SessionTokens:
    reply = rt.replies()[-1]
    assert isinstance(reply, cmd.SessionTokens), reply
    return reply


def _access(reply: cmd.SessionTokens) -> str:
    assert reply.access_token is not None
    return reply.access_token.get_secret_value()


def _last_error(rt: FakeRuntime) -> str:
    reply = rt.replies()[-1]
    assert isinstance(reply, ErrorReply), reply
    assert reply.error is not None
    return reply.error.code


async def _account(rt: FakeRuntime, **query: Any) -> dict[str, Any]:
    doc = await rt.db.auth_accounts.find_one(query)
    assert doc is not None, query
    return dict(doc)


async def _registered(rt: FakeRuntime, h: Handlers, phone: str = PHONE, *,
                      contract: str = CONTRACT, link: bool = True) -> SimpleNamespace:
    """A parent registered by SMS code, logged in and (``link``) linked to the child; the
    child's card is issued first if auth does not know it."""
    if await rt.db.auth_children.find_one({"contract_number": contract}) is None:
        await h.on_card_issued(rt.inbound(_card(contract, f"stu-{contract}"), key=contract))
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id=f"reg-{phone[-4:]}", phone=phone, contract=contract, password=PASSWORD,
        consent=True), key=phone))
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id=f"conf-{phone[-4:]}", phone=phone, code=_code(rt, phone)), key=phone))
    await h.on_login(_req(rt, cmd.Login(request_id=f"login-{phone[-4:]}", login=phone,
                                          password=PASSWORD, device="Android 14"), key=phone))
    login = _tokens(rt)
    token = _access(login)
    if link:
        await h.on_link_child(_req(rt, cmd.LinkChild(
            request_id=f"link-{phone[-4:]}", contract=contract, birth_date=BORN.isoformat()),
            key=phone, token=token))
        token = _access(_tokens(rt))
    claims = verify_access_token(token, _KEYS[1], audience="auth",
                                 now=rt.now.timestamp())
    _forget(rt)
    assert login.refresh_token is not None
    return SimpleNamespace(phone=phone, contract=contract, token=token, account_id=claims.sub,
                           session_id=claims.sid,
                           refresh=login.refresh_token.get_secret_value())


async def _staff(rt: FakeRuntime, h: Handlers, role: cmd.Role = cmd.Role.SUPPORT,
                 name: str = "support.anna") -> SimpleNamespace:
    """A staff member created by a support agent whose account was seeded, logged in and past
    the forced password change; a live session."""
    from services.auth.domain import Account
    from services.auth.security import hash_password
    from services.auth.store import Store

    root = Account.create_staff(account_id="acc_root00000001", role=cmd.Role.SUPPORT,
                                school_id=None, initial_password_hash=hash_password(PASSWORD),
                                now=rt.now, username=f"root.{name}")
    await Store(rt.db).save_account(root, None)
    await h.on_login(_req(rt, cmd.Login(request_id=f"l-{name}", login=f"root.{name}",
                                          password=PASSWORD), key=name))
    first = _tokens(rt)
    await h.on_change_password(_req(rt, cmd.ChangePassword(
        request_id=f"p-{name}", current_password=PASSWORD, new_password=NEW_PASSWORD),
        key=name, token=_access(first)))
    token = _access(_tokens(rt))
    claims = verify_access_token(token, _KEYS[1], audience="auth",
                                 now=rt.now.timestamp())
    _forget(rt)
    return SimpleNamespace(token=token, account_id=claims.sub, login=f"root.{name}")


# --- card issuance ------------------------------------------------------------------------------

async def test_an_issued_card_registers_the_child_once():
    rt, h = _auth()
    msg = rt.inbound(_card(), key=CONTRACT)
    await h.on_card_issued(msg)
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and child["_id"] == "stu-000451" and child["guardian_ids"] == []
    assert rt.emitted() == []
    await rt.redelivered_changes_nothing(h.on_card_issued, msg)
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))  # the issuer sends it again
    assert await rt.db.auth_children.count_documents({}) == 1


async def test_a_card_whose_password_is_the_birth_date_gets_a_contract_login_as_primary():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(birth_date_password=True), key=CONTRACT))
    account = await _account(rt, login_contract=CONTRACT)
    assert account["must_change_password"] and account["status"] == "active"
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and child["guardian_ids"] == [account["_id"]]
    [linked] = rt.emitted(cmd.GuardianLinked)
    assert (linked.account_id, linked.contract, linked.role) == (account["_id"], CONTRACT,
                                                                "primary")
    await h.on_login(_req(rt, cmd.Login(request_id="l-1", login=CONTRACT, password="08032014"),
                                key=CONTRACT))
    assert _tokens(rt).must_change_password


async def test_a_reissued_card_moves_the_guardians_to_the_new_contract():
    rt, h = _auth()
    p = await _registered(rt, h)
    msg = rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract="40012346", new_card_uid="04A2B3C4D5E6F8",
        school_id=SCHOOL, school_tz="Europe/Samara", class_name="5Б", reissued_at=NOW),
        key=CONTRACT)
    await h.on_card_reissued(msg)
    child = await rt.db.auth_children.find_one({"contract_number": "40012346"})
    assert child is not None and child["guardian_ids"] == [p.account_id]
    assert [(e.contract, e.account_id) for e in rt.emitted(cmd.GuardianRemoved)] == [
        (CONTRACT, p.account_id)]
    assert [(e.contract, e.role) for e in rt.emitted(cmd.GuardianLinked)] == [
        ("40012346", "primary")]
    await rt.redelivered_changes_nothing(h.on_card_reissued, msg)


async def test_a_reissue_of_an_unknown_contract_or_onto_another_childs_is_dead_lettered():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))
    await h.on_card_issued(rt.inbound(_card("40099999", "stu-other"), key="40099999"))

    def reissue(old: str, new: str) -> Any:
        return rt.inbound(integ.CardReissued(
            old_contract=old, new_contract=new, new_card_uid="04A2B3C4D5E6F8",
            school_id=SCHOOL, school_tz="Europe/Samara", class_name="5Б", reissued_at=NOW),
            key=old)

    with pytest.raises(Rejected) as unknown:
        await h.on_card_reissued(reissue("40077777", "40066666"))
    assert unknown.value.code == "unknown_contract"
    with pytest.raises(Rejected) as taken:
        await h.on_card_reissued(reissue(CONTRACT, "40099999"))
    assert taken.value.code == "contract_in_use"
    child = await rt.db.auth_children.find_one({"_id": "stu-000451"})
    assert child is not None and child["contract_number"] == CONTRACT


# --- registration and codes ---------------------------------------------------------------------

async def test_registration_sends_a_code_and_the_code_activates_the_account():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-1", phone=PHONE, contract=CONTRACT, password=PASSWORD, consent=True),
        key=PHONE))
    assert rt.replies()[-1] == cmd.RegistrationStarted(request_id="reg-1", resend_after_s=60)
    assert (await _account(rt, phone=PHONE))["status"] == "pending"
    code = _code(rt, PHONE)
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id="conf-1", phone=PHONE, code=code), key=PHONE))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    account = await _account(rt, phone=PHONE)
    assert account["status"] == "active" and code not in str(account)
    assert [e.account_id for e in rt.emitted(cmd.ParentRegistered)] == [account["_id"]]


async def test_registration_without_consent_is_refused_and_nothing_is_stored():
    rt, h = _auth()
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-1", phone=PHONE, contract=CONTRACT, password=PASSWORD, consent=False),
        key=PHONE))
    assert rt.error_code() == "consent_required"
    assert await rt.db.auth_accounts.count_documents({}) == 0 and rt.emitted() == []


async def test_a_wrong_code_is_counted_and_answered_like_an_unknown_phone():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-1", phone=PHONE, contract=CONTRACT, password=PASSWORD, consent=True),
        key=PHONE))
    wrong = f"{(int(_code(rt, PHONE)) + 1) % 10**6:06d}"
    before = await _account(rt, phone=PHONE)
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id="conf-1", phone=PHONE, code=wrong), key=PHONE))
    assert _last_error(rt) == "code_invalid"
    after = await _account(rt, phone=PHONE)
    assert after["version"] == before["version"] + 1 and after["status"] == "pending"
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id="conf-2", phone="+79129999999", code=wrong), key="+79129999999"))
    assert _last_error(rt) == "code_invalid"


async def test_a_code_is_sent_again_only_after_the_cooldown():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-1", phone=PHONE, contract=CONTRACT, password=PASSWORD, consent=True),
        key=PHONE))
    await h.on_resend_code(_req(rt, cmd.ResendCode(request_id="s-1", phone=PHONE),
                                      key=PHONE))
    assert len(rt.emitted(OneTimeCodeRequested)) == 1
    rt.now += timedelta(seconds=61)
    await h.on_resend_code(_req(rt, cmd.ResendCode(request_id="s-2", phone=PHONE),
                                      key=PHONE))
    assert len(rt.emitted(OneTimeCodeRequested)) == 2
    assert rt.replies()[-1] == cmd.RegistrationStarted(request_id="s-2", resend_after_s=60)


async def test_a_password_reset_by_code_sets_the_new_password_and_ends_the_sessions():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_request_password_reset(_req(rt, cmd.RequestPasswordReset(
        request_id="q-1", phone=PHONE), key=PHONE))
    await h.on_resend_code(_req(rt, cmd.ResendCode(request_id="q-2", phone=PHONE,
                                                   purpose="password_reset"), key=PHONE))
    [sms] = rt.emitted(OneTimeCodeRequested)  # the resend waits for the cooldown
    assert sms.purpose == "password_reset"
    await h.on_confirm_password_reset(_req(rt, cmd.ConfirmPasswordReset(
        request_id="z-1", phone=PHONE, code=sms.code, new_password=NEW_PASSWORD), key=PHONE))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    [changed] = rt.emitted(cmd.PasswordChanged)
    assert changed.account_id == p.account_id and changed.reset
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=p.token))
    assert _last_error(rt) == "session_revoked"


async def test_a_reset_for_an_unknown_phone_reads_like_a_wrong_code():
    rt, h = _auth()
    await h.on_confirm_password_reset(_req(rt, cmd.ConfirmPasswordReset(
        request_id="z-1", phone=PHONE, code="123456", new_password=NEW_PASSWORD), key=PHONE))
    assert rt.error_code() == "code_invalid"


# --- login and sessions -------------------------------------------------------------------------

async def test_a_login_starts_a_session_and_tells_notify():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    session = await rt.db.auth_sessions.find_one({"_id": p.session_id})
    assert session is not None and session["account_id"] == p.account_id
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE, password=PASSWORD,
                                          device="iPhone"), key=PHONE))
    tokens = _tokens(rt)
    assert tokens.refresh_token is not None and not tokens.must_change_password
    [event] = rt.emitted(cmd.LoginSucceeded)
    assert (event.account_id, event.device) == (p.account_id, "iPhone")
    assert await rt.db.auth_sessions.count_documents({"account_id": p.account_id}) == 2


async def test_a_wrong_password_is_counted_then_refused():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE,
                                          password="wrong horse battery"), key=PHONE))
    assert rt.error_code() == "invalid_credentials"
    account = await _account(rt, _id=p.account_id)
    assert len(account["password_failures"]) == 1
    assert [r["success"] for r in account["login_history"]] == [True, False]
    assert rt.emitted() == []


async def test_an_unknown_login_is_refused_like_a_wrong_password_and_throttled_alike():
    rt, h = _auth()
    await h.on_login(_req(rt, cmd.Login(request_id="l-1", login="+79125550000",
                                          password=PASSWORD), key="+79125550000"))
    assert rt.error_code() == "invalid_credentials"
    [throttle] = await rt.db.auth_login_throttles.find({}).to_list(None)
    assert len(throttle["password_failures"]) == 1 and len(throttle["source_failures"]) == 1


async def test_a_refresh_rotates_the_token_and_a_reuse_after_the_grace_revokes_the_family():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_refresh_session(_req(rt, cmd.RefreshSession(
        request_id="f-1", refresh_token=p.refresh), key=PHONE))
    renewed = _tokens(rt)
    claims = verify_access_token(_access(renewed), _KEYS[1], audience="auth",
                                 now=rt.now.timestamp())
    assert claims.children == [cmd.ChildGrant(contract=CONTRACT, role="primary")]
    rt.now += timedelta(seconds=31)
    await h.on_refresh_session(_req(rt, cmd.RefreshSession(
        request_id="f-2", refresh_token=p.refresh), key=PHONE))
    assert _last_error(rt) == "refresh_token_reused"
    session = await rt.db.auth_sessions.find_one({"_id": p.session_id})
    assert session is not None and session["revoke_reason"] == "refresh_token_reused"
    [alert] = rt.emitted(cmd.RefreshTokenReused)
    assert alert.session_id == p.session_id
    [ended] = rt.emitted(cmd.SessionEnded)
    assert (ended.account_id, ended.session_id, ended.reason) == (
        p.account_id, p.session_id, "refresh_token_reused")
    await h.on_refresh_session(_req(rt, cmd.RefreshSession(
        request_id="f-3", refresh_token="never-issued-token"), key=PHONE))
    assert _last_error(rt) == "refresh_token_invalid"


async def test_logout_ends_this_session_and_logout_everywhere_every_session():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE, password=PASSWORD),
                                key=PHONE))
    second = _access(_tokens(rt))
    _forget(rt)
    await h.on_logout(_req(rt, cmd.Logout(request_id="o-1"), key=PHONE, token=p.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    session = await rt.db.auth_sessions.find_one({"_id": p.session_id})
    assert session is not None and session["revoke_reason"] == "logout"
    # notify learns which session ended (its push tokens go with it).
    assert [(e.account_id, e.session_id, e.kept_session_id, e.reason)
            for e in rt.emitted(cmd.SessionEnded)] == [
        (p.account_id, p.session_id, None, "logout")]
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=second))
    listed = rt.replies()[-1]
    assert isinstance(listed, cmd.SessionsReply) and [s.current for s in listed.sessions] == [
        True]
    _forget(rt)
    await h.on_logout(_req(rt, cmd.Logout(request_id="o-2", everywhere=True), key=PHONE,
                                 token=second))
    assert [(e.account_id, e.session_id, e.kept_session_id, e.reason)
            for e in rt.emitted(cmd.SessionEnded)] == [
        (p.account_id, None, None, "logout_everywhere")]
    await h.on_get_login_history(_req(rt, cmd.GetLoginHistory(), key=PHONE, token=second))
    assert _last_error(rt) == "session_revoked"


async def test_revoking_a_lost_phone_ends_its_session_once_and_a_retry_is_answered_alike():
    rt, h = _auth()
    phone = await _registered(rt, h, link=False)  # logged in from "Android 14"
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE, password=PASSWORD,
                                        device="Firefox 133"), key=PHONE))
    laptop = _tokens(rt)
    assert laptop.refresh_token is not None
    laptop_sid = verify_access_token(_access(laptop), _KEYS[1], audience="auth",
                                     now=rt.now.timestamp()).sid
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=_access(laptop)))
    listed = rt.replies()[-1]
    assert isinstance(listed, cmd.SessionsReply)
    by_session = {s.session_id: (s.device_id, s.device_name) for s in listed.sessions}
    phone_device, laptop_device = by_session[phone.session_id][0], by_session[laptop_sid][0]
    assert phone_device and laptop_device and phone_device != laptop_device
    assert (by_session[phone.session_id][1], by_session[laptop_sid][1]) == (
        "Android 14", "Firefox 133")
    _forget(rt)

    revoke = cmd.RevokeTrustedDevice(request_id="rv-1", device_id=phone_device)
    first = _req(rt, revoke, key=PHONE, token=_access(laptop))
    await h.on_revoke_trusted_device(first)

    assert rt.replies() == [cmd.CommandCompleted(request_id="rv-1")]
    assert [(e.account_id, e.session_id, e.kept_session_id, e.reason)
            for e in rt.emitted(cmd.SessionEnded)] == [
        (phone.account_id, phone.session_id, None, "device_revoked")]
    await rt.redelivered_changes_nothing(h.on_revoke_trusted_device, first)
    _forget(rt)
    sessions_before = rt.fake_db.dump()["auth_sessions"]
    # the app lost the reply and sends the request again (a new message, the same request id)
    await h.on_revoke_trusted_device(_req(rt, revoke, key=PHONE, token=_access(laptop)))
    assert rt.replies() == [cmd.CommandCompleted(request_id="rv-1")] and rt.emitted() == []
    assert rt.fake_db.dump()["auth_sessions"] == sessions_before

    await h.on_refresh_session(_req(rt, cmd.RefreshSession(
        request_id="f-1", refresh_token=phone.refresh), key=PHONE))
    assert _last_error(rt) == "session_revoked"
    await h.on_refresh_session(_req(rt, cmd.RefreshSession(
        request_id="f-2", refresh_token=laptop.refresh_token.get_secret_value()), key=PHONE))
    assert _tokens(rt).refresh_token is not None
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=_access(laptop)))
    left = rt.replies()[-1]
    assert isinstance(left, cmd.SessionsReply)
    assert [(s.session_id, s.device_id) for s in left.sessions] == [(laptop_sid, laptop_device)]


async def test_the_login_history_lists_the_attempts_newest_first():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE,
                                          password="wrong horse battery"), key=PHONE))
    await h.on_get_login_history(_req(rt, cmd.GetLoginHistory(limit=5), key=PHONE,
                                            token=p.token))
    history = rt.replies()[-1]
    assert isinstance(history, cmd.LoginHistoryReply)
    assert [e.success for e in history.entries] == [False, True]


async def test_a_command_without_a_token_is_refused_unauthenticated_and_an_event_dead_lettered():
    rt, h = _auth()
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE))
    assert rt.error_code() == "unauthenticated"
    with pytest.raises(Rejected) as rejected:
        await h.on_close_account(rt.inbound(cmd.CloseAccount(request_id="c-1"), key=PHONE))
    assert rejected.value.code == "unauthenticated"


# --- passwords and the second factor ------------------------------------------------------------

async def test_a_password_change_keeps_this_session_and_ends_the_others():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE, password=PASSWORD),
                                key=PHONE))
    other = _access(_tokens(rt))
    await h.on_change_password(_req(rt, cmd.ChangePassword(
        request_id="p-1", current_password=PASSWORD, new_password=NEW_PASSWORD), key=PHONE,
        token=p.token))
    token = _access(_tokens(rt))
    assert verify_access_token(token, _KEYS[1], audience="auth",
                                 now=rt.now.timestamp()).sid == p.session_id
    assert [e.reset for e in rt.emitted(cmd.PasswordChanged)] == [False]
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=other))
    assert _last_error(rt) == "session_revoked"
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=token))
    assert isinstance(rt.replies()[-1], cmd.SessionsReply)


async def test_a_wrong_current_password_is_counted_then_refused():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_change_password(_req(rt, cmd.ChangePassword(
        request_id="p-1", current_password="wrong horse battery", new_password=NEW_PASSWORD),
        key=PHONE, token=p.token))
    assert rt.error_code() == "invalid_credentials"
    account = await _account(rt, _id=p.account_id)
    assert len(account["password_failures"]) == 1 and rt.emitted() == []


async def test_an_authenticator_is_enrolled_with_the_password_and_switched_off_with_a_code():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_start_totp_enrolment(_req(rt, cmd.StartTotpEnrolment(
        request_id="t-0", password="wrong horse battery"), key=PHONE, token=p.token))
    assert _last_error(rt) == "invalid_credentials"
    await h.on_start_totp_enrolment(_req(rt, cmd.StartTotpEnrolment(
        request_id="t-1", password=PASSWORD), key=PHONE, token=p.token))
    started = rt.replies()[-1]
    assert isinstance(started, cmd.TotpEnrolmentStarted)
    secret = started.secret.get_secret_value()
    await h.on_confirm_totp_enrolment(_req(rt, cmd.ConfirmTotpEnrolment(
        request_id="t-2", code=totp_code(secret, rt.now)), key=PHONE, token=p.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(request_id="t-2", account_id=p.account_id)
    assert (await _account(rt, _id=p.account_id))["totp_enabled"]
    rt.now += timedelta(seconds=30)
    await h.on_disable_totp(_req(rt, cmd.DisableTotp(
        request_id="t-3", password=PASSWORD, code=""), key=PHONE, token=p.token))
    assert _last_error(rt) == "second_factor_required"
    await h.on_disable_totp(_req(rt, cmd.DisableTotp(
        request_id="t-4", password=PASSWORD, code=totp_code(secret, rt.now)), key=PHONE,
        token=p.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(request_id="t-4", account_id=p.account_id)
    account = await _account(rt, _id=p.account_id)
    assert not account["totp_enabled"] and len(account["password_failures"]) == 2
    [off] = rt.emitted(cmd.SecondFactorDisabled)
    assert off.account_id == p.account_id and not off.by_support


async def test_a_wrong_enrolment_code_is_counted_then_refused():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_start_totp_enrolment(_req(rt, cmd.StartTotpEnrolment(
        request_id="t-1", password=PASSWORD), key=PHONE, token=p.token))
    secret = rt.replies()[-1].secret.get_secret_value()  # type: ignore[attr-defined]
    wrong = next(c for c in (f"{n:06d}" for n in range(10**6))
                 if c not in {totp_code(secret, rt.now + timedelta(seconds=30 * k))
                              for k in (-1, 0, 1)})
    await h.on_confirm_totp_enrolment(_req(rt, cmd.ConfirmTotpEnrolment(
        request_id="t-2", code=wrong), key=PHONE, token=p.token))
    assert _last_error(rt) == "second_factor_invalid"
    account = await _account(rt, _id=p.account_id)
    assert not account["totp_enabled"] and len(account["code_failures"]) == 1


async def test_support_resets_a_parents_second_factor_and_a_parent_may_not():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_start_totp_enrolment(_req(rt, cmd.StartTotpEnrolment(
        request_id="t-1", password=PASSWORD), key=PHONE, token=p.token))
    secret = rt.replies()[-1].secret.get_secret_value()  # type: ignore[attr-defined]
    await h.on_confirm_totp_enrolment(_req(rt, cmd.ConfirmTotpEnrolment(
        request_id="t-2", code=totp_code(secret, rt.now)), key=PHONE, token=p.token))
    agent = await _staff(rt, h)
    reason = "Lost phone; identity checked by call-back, ticket SUP-1"

    def reset(token: str, login: str = PHONE) -> Any:
        return _req(rt, cmd.ResetSecondFactor(request_id=f"x{login[1:]}-{len(token)}",
                                              login=login, reason=reason),
                    key=PHONE, token=token)

    await h.on_reset_second_factor(reset(p.token))
    assert _last_error(rt) == "forbidden"
    await h.on_reset_second_factor(reset(agent.token, "+79129999999"))
    assert _last_error(rt) == "account_not_found"
    await h.on_reset_second_factor(reset(agent.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(
        request_id=f"x{PHONE[1:]}-{len(agent.token)}", account_id=p.account_id)
    account = await _account(rt, _id=p.account_id)
    assert not account["totp_enabled"]
    assert [(r["by_account_id"], r["reason"]) for r in account["factor_resets"]] == [
        (agent.account_id, reason)]
    [off] = rt.emitted(cmd.SecondFactorDisabled)
    assert off.by_support
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=p.token))
    assert _last_error(rt) == "session_revoked"


# --- guardians ----------------------------------------------------------------------------------

async def test_linking_with_the_right_proof_makes_the_parent_primary_and_the_token_says_so():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    await h.on_link_child(_req(rt, cmd.LinkChild(
        request_id="k-1", contract=CONTRACT, birth_date=BORN.isoformat()), key=PHONE,
        token=p.token))
    claims = verify_access_token(_access(_tokens(rt)), _KEYS[1], audience="auth",
                                 now=rt.now.timestamp())
    assert claims.children == [cmd.ChildGrant(contract=CONTRACT, role="primary")]
    [linked] = rt.emitted(cmd.GuardianLinked)
    assert (linked.account_id, linked.role) == (p.account_id, "primary")


async def test_a_wrong_proof_is_counted_then_refused_and_an_unknown_contract_reads_the_same():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    await h.on_link_child(_req(rt, cmd.LinkChild(
        request_id="k-1", contract=CONTRACT, birth_date="2014-03-09"), key=dad.phone,
        token=dad.token))
    assert _last_error(rt) == "child_proof_invalid"
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and len(child["proof_failures"]) == 1
    assert child["guardian_ids"] == [mum.account_id]
    [alert] = rt.emitted(cmd.ChildLinkRefused)
    assert alert.account_id == mum.account_id
    await h.on_link_child(_req(rt, cmd.LinkChild(
        request_id="k-2", contract="40077777", birth_date=BORN.isoformat()), key=dad.phone,
        token=dad.token))
    assert _last_error(rt) == "child_proof_invalid"


REAUTH = cmd.Reauthentication(password=PASSWORD)


async def test_the_primary_invites_and_removes_a_co_guardian():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
        request_id="i-1", contract=CONTRACT, phone=dad.phone, role="co_guardian",
        reauth=REAUTH), key=mum.phone, token=mum.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(request_id="i-1", account_id=dad.account_id,
                                                    invitation_id="inv_i-1")
    assert rt.emitted(cmd.GuardianLinked) == []  # not before the invitee accepts
    await h.on_accept_invitation(_req(rt, cmd.AcceptInvitation(
        request_id="a-1", contract=CONTRACT, invitation_id="inv_i-1"), key=dad.phone,
        token=dad.token))
    assert _tokens(rt).access_token is not None
    [linked] = rt.emitted(cmd.GuardianLinked)
    assert (linked.account_id, linked.role) == (dad.account_id, "co_guardian")
    await h.on_remove_guardian(_req(rt, cmd.RemoveGuardian(
        request_id="m-1", contract=CONTRACT, account_id=dad.account_id, reauth=REAUTH),
        key=mum.phone, token=mum.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(request_id="m-1", account_id=dad.account_id)
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and child["guardian_ids"] == [mum.account_id]
    assert [e.account_id for e in rt.emitted(cmd.GuardianRemoved)] == [dad.account_id]


async def test_an_invitation_for_a_phone_without_an_active_account_or_a_contract_not_held():
    rt, h = _auth()
    mum = await _registered(rt, h)
    await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
        request_id="i-1", contract=CONTRACT, phone="+79129999999", role="viewer",
        reauth=REAUTH), key=mum.phone, token=mum.token))
    assert _last_error(rt) == "invitation_invalid"
    await h.on_remove_guardian(_req(rt, cmd.RemoveGuardian(
        request_id="m-1", contract="40077777", account_id=mum.account_id, reauth=REAUTH),
        key=mum.phone, token=mum.token))
    assert _last_error(rt) == "not_a_guardian"
    await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
        request_id="i-2", contract="40077777", phone=mum.phone, role="viewer"),
        key=mum.phone, token=mum.token))
    assert _last_error(rt) == "forbidden"  # the token names no such child
    assert rt.emitted() == []


# --- staff and closing --------------------------------------------------------------------------

async def test_support_creates_a_staff_account_once_and_a_taken_login_is_refused():
    rt, h = _auth()
    agent = await _staff(rt, h)
    create = cmd.CreateStaffAccount(request_id="n-1", login="canteen.izh42",
                                    password=NEW_PASSWORD, role="canteen_operator",
                                    school_id=SCHOOL)
    await h.on_create_staff_account(rt.inbound(create, key=agent.login, token=agent.token))
    created = rt.replies()[-1]
    assert isinstance(created, cmd.CommandCompleted) and created.account_id is not None
    account = await _account(rt, username="canteen.izh42")
    assert (account["_id"], account["role"], account["school_id"]) == (
        created.account_id, "canteen_operator", SCHOOL)
    await h.on_create_staff_account(rt.inbound(create, key=agent.login, token=agent.token))
    assert rt.replies()[-1] == created  # a retry answers the same
    await h.on_create_staff_account(rt.inbound(create.model_copy(update={"request_id": "n-2"}),
                                               key=agent.login, token=agent.token))
    assert _last_error(rt) == "idempotency_key_reused"
    assert await rt.db.auth_accounts.count_documents({"username": "canteen.izh42"}) == 1


async def test_support_creates_an_integrator_bound_to_its_operator_and_its_token_says_so():
    rt, h = _auth()
    agent = await _staff(rt, h)
    unbound = cmd.CreateStaffAccount(request_id="n-1", login="gortrans.api",
                                     password=NEW_PASSWORD, role="integrator")
    await h.on_create_staff_account(rt.inbound(unbound, key=agent.login, token=agent.token))
    assert _last_error(rt) == "invalid_role"
    staff_bound = cmd.CreateStaffAccount(request_id="n-2", login="canteen.izh42",
                                         password=NEW_PASSWORD, role="canteen_operator",
                                         school_id=SCHOOL, operator_id="izhevsk-gortrans")
    await h.on_create_staff_account(rt.inbound(staff_bound, key=agent.login, token=agent.token))
    assert _last_error(rt) == "invalid_role"
    assert await rt.db.auth_accounts.count_documents({"role": {"$ne": "support"}}) == 0
    await h.on_create_staff_account(rt.inbound(
        unbound.model_copy(update={"request_id": "n-3", "operator_id": "izhevsk-gortrans"}),
        key=agent.login, token=agent.token))
    created = rt.replies()[-1]
    assert isinstance(created, cmd.CommandCompleted) and created.account_id is not None
    account = await _account(rt, username="gortrans.api")
    assert (account["role"], account["operator_id"]) == ("integrator", "izhevsk-gortrans")
    await h.on_login(_req(rt, cmd.Login(request_id="l-int", login="gortrans.api",
                                          password=NEW_PASSWORD), key="gortrans.api"))
    claims = verify_access_token(_access(_tokens(rt)), _KEYS[1], audience="transit",
                                 now=rt.now.timestamp())
    assert (claims.role, claims.operator_id) == (cmd.Role.INTEGRATOR, "izhevsk-gortrans")


async def test_closing_an_account_minimises_it_and_ends_its_guardianships():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_close_account(_req(rt, cmd.CloseAccount(request_id="c-0"), key=PHONE,
                                  token=p.token))
    assert _last_error(rt) == "reauthentication_required"  # the access token is not enough
    await h.on_close_account(_req(rt, cmd.CloseAccount(request_id="c-1", reauth=REAUTH),
                                  key=PHONE, token=p.token))
    assert rt.replies()[-1] == cmd.CommandCompleted(request_id="c-1", account_id=p.account_id)
    account = await _account(rt, _id=p.account_id)
    assert account["status"] == "closed" and account.get("phone") != PHONE
    assert account["password_hash"] is None
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and child["guardian_ids"] == []
    assert [e.account_id for e in rt.emitted(cmd.AccountClosed)] == [p.account_id]
    [tombstone] = rt.emitted(cmd.GuardianContacts)
    assert tombstone.phone is None and tombstone.account_id == p.account_id
    assert [e.account_id for e in rt.emitted(cmd.GuardianRemoved)] == [p.account_id]


# --- the live-session check, for every command that takes a token ------------------------------

TOKEN_COMMANDS: dict[type[Any], Any] = {
    cmd.Logout: cmd.Logout(request_id="d-logout"),
    cmd.ChangePassword: cmd.ChangePassword(request_id="d-pw", current_password=PASSWORD,
                                           new_password=NEW_PASSWORD),
    cmd.StartTotpEnrolment: cmd.StartTotpEnrolment(request_id="d-t1", password=PASSWORD),
    cmd.ConfirmTotpEnrolment: cmd.ConfirmTotpEnrolment(request_id="d-t2", code="123456"),
    cmd.DisableTotp: cmd.DisableTotp(request_id="d-t3", password=PASSWORD, code="123456"),
    cmd.ResetSecondFactor: cmd.ResetSecondFactor(
        request_id="d-x", login=PHONE, reason="Lost phone; identity checked by call-back"),
    cmd.UnlockAccount: cmd.UnlockAccount(
        request_id="d-u", login=PHONE, reason="Locked out; identity checked by call-back"),
    cmd.LinkChild: cmd.LinkChild(request_id="d-k", contract=CONTRACT,
                                 birth_date=BORN.isoformat()),
    cmd.InviteGuardian: cmd.InviteGuardian(request_id="d-i", contract=CONTRACT,
                                           phone="+79120000002", role="viewer"),
    cmd.RemoveGuardian: cmd.RemoveGuardian(request_id="d-m", contract=CONTRACT,
                                           account_id="acc_00000000000000000000000000000002"),
    cmd.CreateStaffAccount: cmd.CreateStaffAccount(
        request_id="d-n", login="teacher.izh42", password=NEW_PASSWORD, role="teacher",
        school_id=SCHOOL),
    cmd.CloseAccount: cmd.CloseAccount(request_id="d-c"),
    cmd.ListSessions: cmd.ListSessions(),
    cmd.GetLoginHistory: cmd.GetLoginHistory(),
    cmd.EndSession: cmd.EndSession(request_id="d-e", session_id="ses_other"),
    cmd.AcceptInvitation: cmd.AcceptInvitation(request_id="d-a", contract=CONTRACT,
                                               invitation_id="inv_x"),
    cmd.RevokeInvitation: cmd.RevokeInvitation(request_id="d-r", contract=CONTRACT,
                                               invitation_id="inv_x"),
    cmd.ChangeGuardianRole: cmd.ChangeGuardianRole(
        request_id="d-g", contract=CONTRACT, account_id="acc_00000000000000000000000000000002",
        role="viewer"),
    cmd.ListGuardians: cmd.ListGuardians(contract=CONTRACT),
    cmd.ListInvitations: cmd.ListInvitations(),
    cmd.SetCodeWord: cmd.SetCodeWord(request_id="d-w", code_word="blue heron",
                                     reauth=cmd.Reauthentication(password=PASSWORD)),
    cmd.StartPhoneChange: cmd.StartPhoneChange(request_id="d-p", phone="+79120000003",
                                               reauth=cmd.Reauthentication(password=PASSWORD)),
    cmd.ConfirmPhoneChange: cmd.ConfirmPhoneChange(request_id="d-q", code="123456"),
    cmd.StartEmailChange: cmd.StartEmailChange(request_id="d-e", email="new@example.ru",
                                               reauth=cmd.Reauthentication(password=PASSWORD)),
    cmd.ConfirmEmailChange: cmd.ConfirmEmailChange(request_id="d-f", code="123456"),
    cmd.UpdateProfile: cmd.UpdateProfile(request_id="d-pr", locale="en"),
    cmd.SetChildName: cmd.SetChildName(request_id="d-cn", contract=CONTRACT,
                                       display_name="Маша"),
    cmd.GetProfile: cmd.GetProfile(),
    cmd.ListTrustedDevices: cmd.ListTrustedDevices(),
    cmd.RenameTrustedDevice: cmd.RenameTrustedDevice(request_id="rn", device_id="dev-1",
                                                     name="Phone"),
    cmd.RevokeTrustedDevice: cmd.RevokeTrustedDevice(request_id="rv", device_id="dev-1"),
}
WITHOUT_TOKEN = {cmd.StartRegistration, cmd.ConfirmRegistration, cmd.ResendCode, cmd.Login,
                 cmd.RefreshSession, cmd.RequestPasswordReset, cmd.ConfirmPasswordReset,
                 integ.CardIssued, integ.CardReissued, integ.VirtualCardIssued}


async def test_every_command_of_auth_is_known_to_take_a_token_or_not():
    rt, _ = _auth()
    routes = await app.wire(rt)
    assert set(routes) == set(TOKEN_COMMANDS) | WITHOUT_TOKEN


@pytest.mark.parametrize("kind", list(TOKEN_COMMANDS), ids=lambda k: k.__name__)
async def test_a_token_of_an_ended_session_is_refused_by_every_command_that_takes_one(kind):
    rt, h = _auth()
    routes = await app.wire(rt)
    p = await _registered(rt, h)
    agent = await _staff(rt, h)
    await h.on_logout(_req(rt, cmd.Logout(request_id="o-p"), key=PHONE, token=p.token))
    await h.on_logout(_req(rt, cmd.Logout(request_id="o-s"), key=PHONE, token=agent.token))
    _forget(rt)
    staff_only = kind in (cmd.ResetSecondFactor, cmd.UnlockAccount, cmd.CreateStaffAccount)
    before = rt.fake_db.dump()
    await routes[kind](rt.inbound(TOKEN_COMMANDS[kind], key=PHONE,
                                  token=agent.token if staff_only else p.token))
    assert rt.error_code() == "session_revoked"
    after = rt.fake_db.dump()
    assert after.pop("auth_inbox") != before.pop("auth_inbox")  # the inbox marker only
    assert after == before and rt.emitted() == []


async def test_a_token_whose_session_auth_never_started_is_refused():
    rt, h = _auth()
    p = await _registered(rt, h)
    forged = rt.token(cmd.Role.PARENT, account_id=p.account_id, session_id="ses_never",
                      children=[cmd.ChildGrant(contract=CONTRACT, role="primary")])
    await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
        request_id="i-1", contract=CONTRACT, phone=PHONE, role="viewer"), key=PHONE,
        token=forged))
    assert rt.error_code() == "session_not_found"
