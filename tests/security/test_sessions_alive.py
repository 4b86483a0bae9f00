"""Every auth command that takes an access token checks that the token's session is still
alive: after a logout, the token (valid for 5 minutes more) no longer works at auth. Through
the real broker and an in-process auth, as in tests/integration/test_auth_flows.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from contracts import auth as cmd
from tests.integration.test_auth_flows import (
    account_of,
    auth,
    enrol,
    error,
    parent,
    password,
    send,
    staff,
)
from tests.support import uid

__all__ = ["auth"]  # the module's fixture: auth in-process with a fake clock

pytestmark = pytest.mark.integration

ENDED = "session_revoked"  # what the domain answers for a session ended by a logout


async def logged_out(a: SimpleNamespace, who: SimpleNamespace, key: str) -> None:
    out = await send(a, cmd.Logout(request_id=uid("o")), key, who.access_token)
    assert out["ok"], out


async def test_a_primary_guardian_logged_out_cannot_invite_a_guardian_with_the_old_token(auth):
    a = auth
    mum = await parent(a)
    dad = await parent(a, link=False)
    await logged_out(a, mum, mum.phone)
    invited = await send(a, cmd.InviteGuardian(request_id=uid("i"), contract=mum.contract,
                                               phone=dad.phone, role="co_guardian"),
                         mum.phone, mum.access_token)
    assert error(invited) == ENDED
    child = await a.db.auth_children.find_one({"contract_number": mum.contract})
    assert account_of(a, dad) not in child["guardian_ids"]


async def test_a_primary_guardian_logged_out_cannot_remove_a_guardian_with_the_old_token(auth):
    a = auth
    mum = await parent(a)
    dad = await parent(a, link=False)
    invited = await send(a, cmd.InviteGuardian(
        request_id=uid("i"), contract=mum.contract, phone=dad.phone, role="viewer",
        reauth=cmd.Reauthentication(password=mum.password)), mum.phone, mum.access_token)
    assert invited["ok"], invited
    accepted = await send(a, cmd.AcceptInvitation(
        request_id=uid("a"), contract=mum.contract, invitation_id=invited["invitation_id"]),
        dad.phone, dad.access_token)
    assert accepted["ok"], accepted
    await logged_out(a, mum, mum.phone)
    removed = await send(a, cmd.RemoveGuardian(
        request_id=uid("m"), contract=mum.contract, account_id=account_of(a, dad),
        reauth=cmd.Reauthentication(password=mum.password)), mum.phone, mum.access_token)
    assert error(removed) == ENDED
    child = await a.db.auth_children.find_one({"contract_number": mum.contract})
    assert account_of(a, dad) in child["guardian_ids"]


async def test_support_logged_out_cannot_create_a_staff_account_with_the_old_token(auth):
    a = auth
    agent = await staff(a)
    await logged_out(a, agent, agent.login)
    login = uid("canteen")
    created = await send(a, cmd.CreateStaffAccount(
        request_id=uid("n"), login=login, password=password(), role="canteen_operator",
        school_id="izh-school-42"), agent.login, agent.access_token)
    assert error(created) == ENDED
    assert await a.db.auth_accounts.find_one({"username": login}) is None


async def test_support_logged_out_cannot_reset_a_second_factor_with_the_old_token(auth):
    a = auth
    p = await parent(a, link=False)
    await enrol(a, p)
    agent = await staff(a)
    await logged_out(a, agent, agent.login)
    reset = await send(a, cmd.ResetSecondFactor(
        request_id=uid("x"), login=p.phone,
        reason=f"Lost phone; identity checked by call-back, ticket {uid('SUP')}"),
        p.phone, agent.access_token)
    assert error(reset) == ENDED
    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert stored["totp_enabled"] and stored["factor_resets"] == []


async def test_a_live_support_session_still_creates_staff_accounts(auth):
    """The check refuses ended sessions only: the same command from a live one succeeds."""
    a = auth
    agent = await staff(a)
    login = uid("canteen")
    created = await send(a, cmd.CreateStaffAccount(
        request_id=uid("n"), login=login, password=password(), role="canteen_operator",
        school_id="izh-school-42"), agent.login, agent.access_token)
    assert created["ok"], created
    stored = await a.db.auth_accounts.find_one({"username": login})
    assert stored is not None and stored["must_change_password"]
