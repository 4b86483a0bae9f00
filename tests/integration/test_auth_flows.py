"""auth end to end in-process, against the real broker and MongoDB-protocol server, with a
fake clock: registration by SMS code, login, tokens the other services accept, session
timeouts and refresh-token reuse, throttling, one-time-code rules and no user enumeration."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import auth as cmd
from contracts.integrations import CardIssued
from services.auth.domain import Account
from services.auth.outbound import new_account_id
from services.auth.security import hash_password, parse_argon2_hash, totp_code
from services.auth.store import Store
from services.runtime.authorization import authorize
from services.runtime.logs import configure_logging
from services.runtime.tokens import (
    TokenError,
    issue_access_token,
    verify_access_token,
)
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.integration

SECRETS: set[str] = set()
"""Every password and one-time code used by the auth tests (read by the secrets scan)."""
REPLY_SECRETS: set[str] = set()
"""Secrets auth hands to their owner in a reply (TOTP secrets): allowed on the requester's own
reply topic only, never in a log, another topic or an event (read by the secrets scan)."""
CAPTURED: list[str] = []


class ScriptedClock(FakeClock):
    """A fake clock that can hand out a script of instants, one per reading (the service
    reads it once per handled message), so a burst of messages can be spread over simulated
    time without waiting for each reply."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.script: list[datetime] = []
        self.readings = 0

    def __call__(self) -> Any:
        if self.script:
            self.readings += 1
            self.now = self.script.pop(0)
        return self.now


class _Capture(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        CAPTURED.append(self.format(record))


def password() -> str:
    pw = f"otter {uid('pw')} paddles"
    SECRETS.add(pw)
    return pw


def phone() -> str:
    return f"+7912{random.randrange(10**6, 10**7)}"


def contract() -> str:
    return f"{random.randrange(10**7, 10**8)}"


@pytest.fixture(scope="module")
async def auth(service_runner, infra, bootstrap, run_dir: Path) -> AsyncIterator[SimpleNamespace]:
    configure_logging("auth", level="INFO", json=True)  # what production renders
    root = logging.getLogger()
    capture = _Capture()
    capture.setFormatter(root.handlers[0].formatter)
    root.addHandler(capture)
    clock = ScriptedClock(datetime(2026, 9, 1, 6, 0, tzinfo=UTC))
    try:
        async with service_runner("auth", clock=clock, private_key=infra["AUTH_PRIVATE_KEY"],
                                  pepper=f"pepper-{uid()}") as svc, \
                Requester(bootstrap) as requester, Integrator(bootstrap) as integrator, \
                TopicReader(bootstrap, "notify.otp-requests.v1") as otp, \
                TopicReader(bootstrap, "auth.events.v1") as events:
            yield SimpleNamespace(svc=svc, db=svc.runtime.db, clock=clock, req=requester,
                                  integrator=integrator, otp=otp, events=events,
                                  public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"])
    finally:
        root.removeHandler(capture)
        (run_dir / "logs").mkdir(exist_ok=True)
        (run_dir / "logs" / "auth-in-process.log").write_text("\n".join(CAPTURED))


# --- helpers -------------------------------------------------------------------------------

async def issue_card(a: SimpleNamespace, number: str, born: date = date(2014, 3, 8),
                     initial_password_is_birth_date: bool = False) -> None:
    card = CardIssued(contract=number, card_uid=chip_uid(),
                      school_id="izh-school-42", school_tz="Europe/Samara",
                      student_id=uid("stu"), class_name="5Б", birth_date=born,
                      initial_password_is_birth_date=initial_password_is_birth_date,
                      issued_at=a.clock.now)
    await a.integrator.publish(card, number)
    # the first card after auth joined its group also waits for the join (Tansu: up to ~20 s)
    await eventually(lambda: a.db.auth_children.find_one({"contract_number": number}),
                     timeout=90, what="the child in auth_children")


async def code_for(a: SimpleNamespace, to: str, *, count: int = 1) -> str:
    """The ``count``-th code sent to ``to`` (the relay may publish a record twice: at least
    once; copies share the message id)."""
    async def nth() -> str | None:
        await a.otp.poll()
        distinct = {r.headers["ce_id"]: r for r in a.otp.records if r.key == to}
        return str(list(distinct.values())[count - 1].json()["code"]) \
            if len(distinct) >= count else None

    code = await eventually(nth, what=f"code #{count} for {to}")
    SECRETS.add(code)
    return code


async def send(a: SimpleNamespace, message: Any, key: str, token: str | None = None) -> Any:
    reply = await a.req.send(message, key, token=token)
    return reply.json()


async def register(a: SimpleNamespace, number: str, tel: str, pw: str) -> None:
    started = await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel,
                                                  contract=number, password=pw, consent=True), tel)
    assert started["ok"] and started["resend_after_s"] == 60
    code = await code_for(a, tel)
    confirmed = await send(a, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel, code=code),
                           tel)
    assert confirmed["ok"], confirmed


async def login(a: SimpleNamespace, tel: str, pw: str) -> dict[str, Any]:
    return await send(a, cmd.Login(request_id=uid("l"), login=tel, password=pw,
                                   device="Android 14, SchoolCard 2.4", ip="10.0.0.7"), tel)


async def refresh(a: SimpleNamespace, token: str, key: str) -> dict[str, Any]:
    return await send(a, cmd.RefreshSession(request_id=uid("f"), refresh_token=token), key)


def error(reply: dict[str, Any]) -> str:
    assert not reply["ok"], reply
    return str(reply["error"]["code"])


async def parent(a: SimpleNamespace, *, link: bool = True) -> SimpleNamespace:
    number, tel, pw = contract(), phone(), password()
    await issue_card(a, number)
    await register(a, number, tel, pw)
    tokens = await login(a, tel, pw)
    assert tokens["ok"], tokens
    if link:
        linked = await send(a, cmd.LinkChild(request_id=uid("k"), contract=number,
                                             birth_date="2014-03-08"), tel,
                            tokens["access_token"])
        assert linked["ok"], linked
        tokens["access_token"] = linked["access_token"]
    return SimpleNamespace(contract=number, phone=tel, password=pw, **tokens)


async def staff(a: SimpleNamespace, role: cmd.Role = cmd.Role.SUPPORT,
                school_id: str | None = None) -> SimpleNamespace:
    """A staff member as auth knows them: the account stored the way an operator seeds the
    first one, logged in, the initial password changed; the access token is of a live
    session."""
    name, initial, pw = uid("staff"), password(), password()
    account = Account.create_staff(account_id=new_account_id(), role=role, school_id=school_id,
                                   initial_password_hash=hash_password(initial),
                                   now=a.clock.now, username=name)
    await Store(a.db).save_account(account, None)

    first = await send(a, cmd.Login(request_id=uid("l"), login=name, password=initial), name)
    assert first["ok"] and first["must_change_password"], first
    changed = await send(a, cmd.ChangePassword(request_id=uid("p"), current_password=initial,
                                               new_password=pw), name, first["access_token"])
    assert changed["ok"], changed
    return SimpleNamespace(account_id=account.account_id, login=name, password=pw,
                           access_token=changed["access_token"],
                           refresh_token=first["refresh_token"])


def account_of(a: SimpleNamespace, p: SimpleNamespace) -> str:
    return verify_access_token(p.access_token, a.public_key, audience="auth",
                               now=a.clock.now.timestamp()).sub


async def security_events(a: SimpleNamespace, account_id: str,
                          type_suffix: str) -> list[dict[str, Any]]:
    """The distinct ``type_suffix`` events auth published for ``account_id``."""
    found = await a.events.wait_for(lambda r: r.key == account_id
                                    and r.type.endswith(type_suffix))
    return [r.json() for r in {r.headers["ce_id"]: r for r in found}.values()]


# --- tests ---------------------------------------------------------------------------------

async def test_a_parent_registers_by_sms_code_logs_in_links_the_child_and_other_services_accept_the_token(  # noqa: E501
        auth):
    a = auth
    p = await parent(a)
    claims = verify_access_token(p.access_token, a.public_key, audience="auth",
                                 now=a.clock.now.timestamp())
    authorize(claims, "view", contract=p.contract)
    authorize(claims, "change_limits", contract=p.contract)
    with pytest.raises(TokenError):
        authorize(claims, "view", contract=contract())  # not their child
    account = await a.db.auth_accounts.find_one({"phone": p.phone})
    stored = parse_argon2_hash(account["password_hash"])
    assert (stored.variant, stored.memory_cost_kib, stored.time_cost, stored.parallelism) == (
        "argon2id", 19456, 2, 1)
    facts = await a.events.wait_for(lambda r: r.key == claims.sub, count=3)
    assert {f.type.rsplit(".", 1)[-1] for f in facts} >= {"ParentRegistered", "LoginSucceeded",
                                                          "GuardianLinked"}


async def test_a_second_parent_cannot_link_without_proof_and_a_co_guardian_cannot_change_limits(
        auth):
    a = auth
    mum = await parent(a)
    dad = await parent(a, link=False)
    wrong = await send(a, cmd.LinkChild(request_id=uid("k"), contract=mum.contract,
                                        birth_date="2014-03-09"), dad.phone, dad.access_token)
    assert error(wrong) == "child_proof_invalid"
    # The primary guardian is told (notify's child_link_refused); not who tried nor the date.
    [alert] = await security_events(a, account_of(a, mum), ".ChildLinkRefused")
    assert alert["contract"] == mum.contract and alert["failures_in_window"] == 1
    assert account_of(a, dad) not in str(alert) and "2014-03-09" not in str(alert)
    invited = await send(a, cmd.InviteGuardian(
        request_id=uid("i"), contract=mum.contract, phone=dad.phone, role="co_guardian",
        reauth=cmd.Reauthentication(password=mum.password)), mum.phone, mum.access_token)
    assert invited["ok"], invited
    accepted = await send(a, cmd.AcceptInvitation(
        request_id=uid("a"), contract=mum.contract, invitation_id=invited["invitation_id"]),
        dad.phone, dad.access_token)
    assert accepted["ok"], accepted
    renewed = await refresh(a, dad.refresh_token, dad.phone)
    claims = verify_access_token(renewed["access_token"], a.public_key, audience="auth",
                                 now=a.clock.now.timestamp())
    authorize(claims, "top_up", contract=mum.contract)
    with pytest.raises(TokenError):
        authorize(claims, "change_limits", contract=mum.contract)
    refused = await send(a, cmd.InviteGuardian(request_id=uid("i"), contract=mum.contract,
                                               phone=mum.phone, role="viewer"),
                         dad.phone, renewed["access_token"])
    assert error(refused) == "forbidden"


async def test_a_session_survives_19_59_idle_but_not_20_01_and_never_12_hours(auth):
    a = auth
    p = await parent(a, link=False)
    a.clock.advance(minutes=19, seconds=59)
    renewed = await refresh(a, p.refresh_token, p.phone)
    assert renewed["ok"], renewed
    a.clock.advance(minutes=20, seconds=1)
    assert error(await refresh(a, renewed["refresh_token"], p.phone)) == "session_idle_expired"

    token = (await login(a, p.phone, p.password))["refresh_token"]
    for _ in range(37):  # 37 x 19 min = 11 h 43 min, always inside the idle limit
        a.clock.advance(minutes=19)
        reply = await refresh(a, token, p.phone)
        assert reply["ok"], reply
        token = reply["refresh_token"]
    a.clock.advance(minutes=17)  # 12 h after login
    assert error(await refresh(a, token, p.phone)) == "session_lifetime_expired"


async def test_reusing_a_rotated_refresh_token_after_the_grace_window_revokes_the_session(auth):
    a = auth
    p = await parent(a, link=False)
    renewed = await refresh(a, p.refresh_token, p.phone)
    assert renewed["ok"]
    a.clock.advance(seconds=30)  # AUTH_REFRESH_REUSE_GRACE_S, default 30
    assert error(await refresh(a, p.refresh_token, p.phone)) == "refresh_token_reused"
    assert error(await refresh(a, renewed["refresh_token"], p.phone)) == "session_revoked"
    [alert] = await security_events(a, account_of(a, p), ".RefreshTokenReused")
    claims = verify_access_token(p.access_token, a.public_key, audience="auth",
                                 now=a.clock.now.timestamp())
    assert alert["session_id"] == claims.sid
    assert p.refresh_token not in str(alert) and renewed["refresh_token"] not in str(alert)


async def test_a_refresh_retried_after_a_lost_reply_is_answered_and_the_lost_token_dies(auth):
    a = auth
    p = await parent(a, link=False)
    retry = cmd.RefreshSession(request_id=uid("f"), refresh_token=p.refresh_token)
    lost = await send(a, retry, p.phone)  # pretend this reply never reached the app
    assert lost["ok"]
    a.clock.advance(seconds=20)
    answered = await send(a, retry, p.phone)  # the app retries the same request
    assert answered["ok"], answered
    assert answered["refresh_token"] != lost["refresh_token"]
    verify_access_token(answered["access_token"], a.public_key, audience="auth",
                        now=a.clock.now.timestamp())
    a.clock.advance(minutes=5)
    onward = await refresh(a, answered["refresh_token"], p.phone)
    assert onward["ok"], onward  # the session goes on with the token the app received
    # Whoever kept the token of the lost reply cannot use it once the window is over.
    assert error(await refresh(a, lost["refresh_token"], p.phone)) == "refresh_token_reused"
    assert error(await refresh(a, onward["refresh_token"], p.phone)) == "session_revoked"


async def test_150_wrong_passwords_in_an_hour_process_at_most_100_and_the_owner_gets_in_by_reset_code(  # noqa: E501
        auth):
    a = auth
    p = await parent(a, link=False)
    wrong = password()
    start = a.clock.now
    # 100 attempts 30 s apart, then 50 more in the last 10 minutes of the same hour, one
    # every 12 s, each from a new address (so only the account's ceiling holds them); sent
    # at once, stamped by the script.
    a.clock.script = [start + timedelta(seconds=30 * i if i < 100 else 3000 + 12 * (i - 100))
                      for i in range(150)]
    order: list[str] = []
    for i in range(150):
        env = await a.req.integrator.publish(
            cmd.Login(request_id=f"brute-{i}-{uid()}", login=p.phone, password=wrong,
                      ip=f"198.51.100.{i}"),
            p.phone, reply_to=a.req.reply_topic)
        order.append(env.correlation_id)
    ids = set(order)

    async def answered() -> dict[str, Any] | None:
        await a.req.replies.poll()  # copies of a reply (at-least-once relay) share its id
        found = {r.headers["ce_correlationid"]: r for r in a.req.replies.records
                 if r.headers.get("ce_correlationid") in ids}
        return found if len(found) == 150 else None

    distinct = await eventually(answered, timeout=120, what="150 login replies")
    assert not a.clock.script and a.clock.now - start < timedelta(hours=1)
    codes = [error(distinct[c].json()) for c in order]
    processed = codes.count("invalid_credentials")  # argon2 verification ran
    assert 95 <= processed <= 100, codes
    assert codes[-40:] == ["login_rate_limited"] * 40
    assert set(codes) <= {"invalid_credentials", "login_delayed", "login_rate_limited"}
    account = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert len(account["password_failures"]) <= 100

    # The documented way back in: a password reset by SMS code, then a normal login.
    await send(a, cmd.RequestPasswordReset(request_id=uid("q"), phone=p.phone), p.phone)
    code = await code_for(a, p.phone, count=2)
    new = password()
    done = await send(a, cmd.ConfirmPasswordReset(request_id=uid("z"), phone=p.phone, code=code,
                                                  new_password=new), p.phone)
    assert done["ok"], done
    assert (await login(a, p.phone, new))["ok"]
    again = await send(a, cmd.ConfirmPasswordReset(request_id=uid("z"), phone=p.phone,
                                                   code=code, new_password=password()), p.phone)
    assert error(again) == "code_invalid"  # a used code is refused


async def test_a_code_fails_after_5_wrong_attempts_and_after_expiry_and_once_used(auth):
    a = auth
    number, tel, pw = contract(), phone(), password()
    await issue_card(a, number)
    await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel, contract=number,
                                        password=pw, consent=True), tel)
    code = await code_for(a, tel)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert error(await send(a, cmd.ConfirmRegistration(
            request_id=uid("c"), phone=tel, code=wrong), tel)) == "code_invalid"
    assert error(await send(a, cmd.ConfirmRegistration(
        request_id=uid("c"), phone=tel, code=code), tel)) == "code_invalid"

    a.clock.advance(seconds=61)
    await send(a, cmd.ResendCode(request_id=uid("s"), phone=tel), tel)
    second = await code_for(a, tel, count=2)
    a.clock.advance(minutes=5)
    assert error(await send(a, cmd.ConfirmRegistration(
        request_id=uid("c"), phone=tel, code=second), tel)) == "code_invalid"

    await send(a, cmd.ResendCode(request_id=uid("s"), phone=tel), tel)
    third = await code_for(a, tel, count=3)
    assert (await send(a, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel, code=third),
                       tel))["ok"]
    assert error(await send(a, cmd.ConfirmRegistration(
        request_id=uid("c"), phone=tel, code=third), tel)) == "code_invalid"
    stored = await a.db.auth_accounts.find_one({"phone": tel})
    assert stored["status"] == "active" and third not in str(stored)


async def test_known_and_unknown_phones_get_identical_replies(auth):
    a = auth
    known = await parent(a, link=False)
    unknown = phone()
    pw, request_id = password(), uid("same")

    async def both(make: Any) -> tuple[Any, Any]:
        first = await a.req.send(make(known.phone), known.phone)
        second = await a.req.send(make(unknown), unknown)
        return first, second

    for make in (
        lambda tel: cmd.StartRegistration(request_id=request_id, phone=tel,
                                          contract=known.contract, password=pw, consent=True),
        lambda tel: cmd.Login(request_id=request_id, login=tel, password=pw),
        lambda tel: cmd.RequestPasswordReset(request_id=request_id, phone=tel),
        lambda tel: cmd.ConfirmPasswordReset(request_id=request_id, phone=tel, code="000000",
                                             new_password=pw),
    ):
        first, second = await both(make)
        assert first.type == second.type
        assert first.json() == second.json()
    # Only the owner of the known phone hears of the registration attempt (a security alert).
    [alert] = await security_events(a, account_of(a, known),
                                    ".RegistrationAttemptedForExistingAccount")
    assert set(alert) == {"account_id", "at"}


async def test_a_contract_with_the_birth_date_password_must_change_it_at_first_login(auth):
    a = auth
    number = contract()
    await issue_card(a, number, born=date(2013, 11, 2), initial_password_is_birth_date=True)
    SECRETS.add("02112013")
    first = await send(a, cmd.Login(request_id=uid("l"), login=number, password="02112013"),
                       number)
    assert first["ok"] and first["must_change_password"]
    restricted = verify_access_token(first["access_token"], a.public_key, audience="auth",
                                     now=a.clock.now.timestamp())
    assert restricted.children == []
    new = password()
    changed = await send(a, cmd.ChangePassword(request_id=uid("p"), current_password="02112013",
                                               new_password=new), number, first["access_token"])
    assert changed["ok"], changed
    full = verify_access_token(changed["access_token"], a.public_key, audience="auth",
                               now=a.clock.now.timestamp())
    authorize(full, "change_limits", contract=number)


async def test_sessions_and_login_history_are_listed_and_logout_everywhere_ends_them(auth):
    a = auth
    p = await parent(a, link=False)
    second = await login(a, p.phone, p.password)
    listed = await send(a, cmd.ListSessions(), p.phone, second["access_token"])
    assert len(listed["sessions"]) == 2 and sum(s["current"] for s in listed["sessions"]) == 1
    history = await send(a, cmd.GetLoginHistory(limit=5), p.phone, second["access_token"])
    assert [e["success"] for e in history["entries"]] == [True, True]
    out = await send(a, cmd.Logout(request_id=uid("o"), everywhere=True), p.phone,
                     second["access_token"])
    assert out["ok"]
    assert error(await refresh(a, p.refresh_token, p.phone)) == "session_revoked"
    assert error(await refresh(a, second["refresh_token"], p.phone)) == "session_revoked"


async def test_published_codes_do_not_stay_in_the_outbox(auth):
    a = auth

    async def gone() -> bool:
        left = await a.db.auth_outbox.find({"topic": "notify.otp-requests.v1"}).to_list(None)
        return all(d["status"] == "pending" for d in left)

    assert await eventually(gone, timeout=30, what="published code records deleted")


def wrong_totp(secret: str, now: datetime) -> str:
    """Six digits that are none of the codes accepted at ``now`` (one step of drift)."""
    accepted = {totp_code(secret, now + timedelta(seconds=30 * d)) for d in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in accepted)


def totp_now(a: SimpleNamespace, secret: str) -> str:
    code = totp_code(secret, a.clock.now)
    SECRETS.add(code)
    return code


async def test_a_parent_enrols_an_authenticator_app_and_then_every_login_needs_a_fresh_code(
        auth):
    a = auth
    p = await parent(a, link=False)
    pw_wrong = password()
    refused = await send(a, cmd.StartTotpEnrolment(request_id=uid("t"), password=pw_wrong),
                         p.phone, p.access_token)
    assert error(refused) == "invalid_credentials"  # a stolen token alone cannot enrol
    started = await send(a, cmd.StartTotpEnrolment(request_id=uid("t"), password=p.password),
                         p.phone, p.access_token)
    assert started["ok"], started
    secret = started["secret"]
    REPLY_SECRETS.add(secret)
    assert started["otpauth_uri"].startswith("otpauth://totp/SchoolCard:")
    assert f"secret={secret}" in started["otpauth_uri"]
    assert (started["digits"], started["period_s"]) == (6, 30)
    assert (await login(a, p.phone, p.password))["ok"]  # not confirmed: no code needed yet

    wrong = await send(a, cmd.ConfirmTotpEnrolment(request_id=uid("t"),
                                                   code=wrong_totp(secret, a.clock.now)),
                       p.phone, p.access_token)
    assert error(wrong) == "second_factor_invalid"
    confirmed = await send(a, cmd.ConfirmTotpEnrolment(request_id=uid("t"),
                                                       code=totp_now(a, secret)),
                           p.phone, p.access_token)
    assert confirmed["ok"], confirmed

    assert error(await login(a, p.phone, p.password)) == "second_factor_required"
    a.clock.advance(seconds=30)
    bad = cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                    totp=wrong_totp(secret, a.clock.now))
    assert error(await send(a, bad, p.phone)) == "second_factor_invalid"
    code = totp_now(a, secret)
    tokens = await send(a, cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                                     totp=code), p.phone)
    assert tokens["ok"], tokens
    verify_access_token(tokens["access_token"], a.public_key, audience="auth",
                        now=a.clock.now.timestamp())
    replayed = await send(a, cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                                       totp=code), p.phone)
    assert error(replayed) == "second_factor_invalid"  # a code works once
    unknown = await send(a, cmd.Login(request_id=uid("l"), login=phone(), password=p.password,
                                      totp=code), p.phone)
    assert error(unknown) == "invalid_credentials"

    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    # The wrong password of the enrolment and the three refused logins count in the hour's
    # ceiling (a success clears only its own source's window).
    assert stored["totp_enabled"] and len(stored["password_failures"]) == 4
    history = await send(a, cmd.GetLoginHistory(limit=3), p.phone, tokens["access_token"])
    assert [e["success"] for e in history["entries"]] == [False, True, False]

    async def secret_gone() -> bool:
        left = await a.db.auth_outbox.find({}).to_list(None)
        return not any(secret in d["payload"] for d in left)

    assert await eventually(secret_gone, timeout=30, what="the TOTP reply gone from the outbox")



async def enrol(a: SimpleNamespace, p: SimpleNamespace) -> str:
    """Enrol and confirm an authenticator app for ``p``; the secret."""
    started = await send(a, cmd.StartTotpEnrolment(request_id=uid("t"), password=p.password),
                         p.phone, p.access_token)
    assert started["ok"], started
    secret = str(started["secret"])
    REPLY_SECRETS.add(secret)
    confirmed = await send(a, cmd.ConfirmTotpEnrolment(request_id=uid("t"),
                                                       code=totp_now(a, secret)),
                           p.phone, p.access_token)
    assert confirmed["ok"], confirmed
    a.clock.advance(seconds=30)  # the next code is a new step
    return secret


def staff_token(a: SimpleNamespace, private_key: str, role: cmd.Role) -> tuple[str, str]:
    """An access token signed with auth's key for a staff member auth has no session of,
    and its account id: authorization refuses it or, past that, the live-session check."""
    account_id = f"acc_{uid('s')[2:]}"
    return issue_access_token(private_key, account_id=account_id, session_id=uid("ses"),
                              role=role, school_id="izh-school-42",
                              now=a.clock.now.timestamp()), account_id


async def second_factor_events(a: SimpleNamespace, account_id: str) -> list[dict[str, Any]]:
    found = await a.events.wait_for(lambda r: r.key == account_id
                                    and r.type.endswith(".SecondFactorDisabled"))
    return [r.json() for r in {r.headers["ce_id"]: r for r in found}.values()]


async def test_a_parent_switches_the_authenticator_off_with_the_password_and_a_current_code(
        auth):
    a = auth
    p = await parent(a, link=False)
    secret = await enrol(a, p)
    account_id = verify_access_token(p.access_token, a.public_key, audience="auth",
                                     now=a.clock.now.timestamp()).sub

    def disable(pw: str, code: str) -> cmd.DisableTotp:
        return cmd.DisableTotp(request_id=uid("d"), password=pw, code=code)

    right = totp_now(a, secret)
    assert error(await send(a, disable(password(), right), p.phone, p.access_token)) == (
        "invalid_credentials")
    assert error(await send(a, disable(p.password, wrong_totp(secret, a.clock.now)), p.phone,
                            p.access_token)) == "second_factor_invalid"
    assert error(await send(a, disable(p.password, ""), p.phone, p.access_token)) == (
        "second_factor_required")
    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert stored["totp_enabled"] and len(stored["password_failures"]) == 3  # the login window

    command = disable(p.password, right)  # the wrong password above did not spend it
    done = await send(a, command, p.phone, p.access_token)
    assert done["ok"] and done["account_id"] == account_id, done
    again = await send(a, command, p.phone, p.access_token)  # a client retry
    assert again["ok"], again
    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert not stored["totp_enabled"] and stored["totp_secret"] is None
    assert (await login(a, p.phone, p.password))["ok"]  # the password alone again
    assert error(await send(a, disable(p.password, totp_now(a, secret)), p.phone,
                            p.access_token)) == "second_factor_not_enabled"
    (event,) = await second_factor_events(a, account_id)
    assert event["by_support"] is False


async def test_support_resets_a_lost_authenticator_ends_the_sessions_and_tells_the_parent(
        auth, infra):
    a = auth
    p = await parent(a, link=False)
    await enrol(a, p)
    account_id = verify_access_token(p.access_token, a.public_key, audience="auth",
                                     now=a.clock.now.timestamp()).sub
    # The phone with the app is lost: the password alone no longer logs in.
    assert error(await login(a, p.phone, p.password)) == "second_factor_required"
    reason = f"Lost phone; identity checked by call-back, ticket {uid('SUP')}"

    def reset(login_: str, why: str = reason) -> cmd.ResetSecondFactor:
        return cmd.ResetSecondFactor(request_id=uid("x"), login=login_, reason=why)

    agent = await staff(a)
    support, support_id = agent.access_token, agent.account_id
    admin, _ = staff_token(a, infra["AUTH_PRIVATE_KEY"], cmd.Role.SCHOOL_ADMIN)
    forged, _ = staff_token(a, infra["AUTH_PRIVATE_KEY"], cmd.Role.SUPPORT)
    for token, code in ((p.access_token, "forbidden"), (admin, "forbidden"),
                        (None, "unauthenticated"), (forged, "session_not_found")):
        assert error(await send(a, reset(p.phone), p.phone, token)) == code
    assert error(await send(a, reset(p.phone, "  lost  "), p.phone, support)) == (
        "reset_reason_required")
    assert error(await send(a, reset(phone()), p.phone, support)) == "account_not_found"
    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert stored["totp_enabled"] and stored["factor_resets"] == []

    command = reset(p.phone)
    done = await send(a, command, p.phone, support)
    assert done["ok"] and done["account_id"] == account_id, done
    assert (await send(a, command, p.phone, support))["ok"]  # a retry answers the same

    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert not stored["totp_enabled"] and stored["totp_secret"] is None
    assert [(r["by_account_id"], r["reason"]) for r in stored["factor_resets"]] == [
        (support_id, reason)]
    assert error(await refresh(a, p.refresh_token, p.phone)) == "session_revoked"
    assert (await login(a, p.phone, p.password))["ok"]  # and at once: the window was cleared
    (event,) = await second_factor_events(a, account_id)
    assert event["by_support"] is True
    assert reason not in "\n".join(r.value.decode() for r in a.events.records)
    assert not any(reason in line for line in CAPTURED)
