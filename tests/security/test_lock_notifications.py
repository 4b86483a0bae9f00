"""The owner hears when their login is closed and opened: failed logins that fill the hourly
ceiling or use up a birth-date password's tries raise AccountLocked once (with when it opens
by itself, or none: support only); support's UnlockAccount raises AccountUnlocked; notify
tells the owner in Russian, as a security message (no quiet hours, no muting). Pure rules,
and auth and notify through the real broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts import auth as cmd
from services.auth import outbound
from services.auth.domain import (
    LIFETIME_FAILURE_LIMIT,
    Account,
    AccountKind,
    AccountStatus,
)
from services.auth.domain.events import AccountLocked, AccountUnlocked
from services.auth.security import AccessRole
from services.notify import inbound
from services.notify.domain import SECURITY_KINDS, Locale, NotificationKind
from tests.integration.notify_support import as_awaitable, http_to
from tests.integration.test_auth_flows import auth, send, staff
from tests.security.test_push_tokens_end_with_session import guardian, notify
from tests.support import eventually, uid

__all__ = ["auth", "notify"]

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _parent(**kw: Any) -> Account:
    return Account(account_id="acc_00000001", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79120000001",
                   password_hash="HASH", **kw)


def _fail(account: Account, now: datetime, source: str) -> None:
    account.login(password_ok=False, now=now, session_id="s", refresh_token_hash="rt",
                  device="d", ip_hash="ip", source=source)


def _locks(account: Account) -> list[AccountLocked]:
    return [e for e in account.pull_events() if isinstance(e, AccountLocked)]


@pytest.mark.unit
def test_filling_the_hourly_ceiling_locks_once_and_says_when_it_opens() -> None:
    account = _parent()
    for i in range(99):
        _fail(account, T0 + timedelta(seconds=i), f"src-{i}")
    assert _locks(account) == []
    _fail(account, T0 + timedelta(seconds=99), "src-99")
    [lock] = _locks(account)
    assert lock.until == T0 + timedelta(hours=1) and lock.occurred_at == T0 + timedelta(
        seconds=99)
    for i in range(100, 130):  # refused unprocessed: no further alert
        _fail(account, T0 + timedelta(seconds=i), f"src-{i}")
    assert _locks(account) == []


@pytest.mark.unit
def test_using_up_a_birth_date_passwords_tries_locks_until_support_opens_it() -> None:
    account = _parent(must_change_password=True, login_contract="40012345")
    assert account.password_is_guessable
    for i in range(LIFETIME_FAILURE_LIMIT):
        _fail(account, T0 + timedelta(minutes=i), "src")
    locks = _locks(account)
    assert [lock.until for lock in locks] == [None]


@pytest.mark.unit
def test_an_unlock_by_support_goes_out_as_account_unlocked_without_the_reason() -> None:
    account = _parent()
    assert account.unlock(by_account_id="acc-support", reason="Called back, ticket SUP-1",
                          now=T0).ok
    events = account.pull_events()
    assert any(isinstance(e, AccountUnlocked) for e in events)
    [(topic, key, message, _)] = [w for w in outbound.to_wire(events)
                                  if isinstance(w[2], cmd.AccountUnlocked)]
    assert topic == "auth.events.v1" and key == "acc_00000001" and message.at == T0
    assert "SUP-1" not in message.model_dump_json()


@pytest.mark.unit
def test_notify_tells_the_owner_in_russian_as_a_security_message() -> None:
    from services.notify.domain.templates import RenderContext, render

    locked = inbound.account_locked(cmd.AccountLocked(account_id="acc_00000001", until=None, at=T0))
    paused = inbound.account_locked(cmd.AccountLocked(account_id="acc_00000001",
                                                      until=T0 + timedelta(hours=1), at=T0))
    opened = inbound.account_unlocked(cmd.AccountUnlocked(account_id="acc_00000001", at=T0))
    assert {locked.kind, opened.kind} <= SECURITY_KINDS
    assert locked.kind is NotificationKind.ACCOUNT_LOCKED and locked.account_id == "acc_00000001"
    assert opened.kind is NotificationKind.ACCOUNT_UNLOCKED
    assert locked.event_id != opened.event_id
    ctx = RenderContext(Locale.RU, ZoneInfo("Europe/Moscow"))
    joined = " ".join(render(e.kind, e.facts, ctx).body for e in (locked, paused, opened))
    assert "заблокирован" in joined and "обратитесь в поддержку" in joined
    assert "откроется сам в 12:00" in joined  # 09:00 UTC + 1 h, Moscow time
    assert "разблокировала вход" in joined


@pytest.mark.integration
async def test_through_the_broker_support_unlocking_the_account_is_texted_to_the_owner(
        auth, notify):
    a, n = auth, notify
    mum = await guardian(a, n)
    agent = await staff(a)
    unlock = cmd.UnlockAccount(request_id=uid("u"), login=mum.phone,
                               reason=f"Owner called back, ticket {uid('SUP')}")
    assert (await send(a, unlock, mum.phone, agent.access_token))["ok"]

    [sms] = await eventually(
        lambda: as_awaitable([r for r in http_to(n, "/sms", to=mum.phone, status=None)
                              if "разблокировала вход" in r["body"]["text"]]),
        timeout=60, what="the unlock texted to the owner")
    assert "SUP" not in sms["body"]["text"]  # support's reason stays at auth
