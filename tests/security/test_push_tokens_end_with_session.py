"""A push token belongs to the session that registered it and dies with it: after a guardian
logs out, the device signed in there hears nothing more of the child (the news goes by SMS),
the access token of the ended session (valid five more minutes) cannot register a device
again, and a device registered from another session of the guardian keeps its pushes.
Through the real broker: auth and notify in-process (auth as in
tests/integration/test_auth_flows.py; notify reads auth's fake clock, so its tokens are fresh
there), notify's providers the local sinks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts import auth as cmd
from contracts.access import StudentEntered
from contracts.notify import RegisterPushToken, SetPreferences
from tests.integration.notify_support import TZ, as_awaitable, http_to, notify_stack
from tests.integration.test_auth_flows import account_of, auth, login, parent, send
from tests.support import eventually, uid

__all__ = ["auth"]  # the module's fixture: auth in-process with a fake clock

pytestmark = pytest.mark.integration

KINDS = ["arrived_safely", "child_entered", "child_left"]


@pytest.fixture(scope="module")
async def notify(service_runner, bootstrap, infra, auth,
                 tmp_path_factory) -> AsyncIterator[dict[str, Any]]:
    async with notify_stack(service_runner, bootstrap, infra,
                            tmp_path_factory.mktemp("push-sinks"),
                            clock=lambda: auth.clock.now) as running:
        yield running


async def guardian(a: SimpleNamespace, n: dict[str, Any]) -> SimpleNamespace:
    """A parent registered, signed in and linked at auth, projected by notify from auth's
    events, wanting push and else SMS for the child's comings and goings."""
    p = await parent(a)
    p.account_id = account_of(a, p)
    db = n["svc"].runtime.db

    async def projected() -> bool:
        doc = await db.notify_guardians.find_one({"_id": p.account_id})
        return bool(doc and doc["phone"] == p.phone
                    and p.contract in {c["contract"] for c in doc["children"]})

    await eventually(projected, timeout=90, what="the guardian projected by notify")
    reply = await n["req"].send(SetPreferences(
        request_id=uid("pref"), account_id=p.account_id, channels={k: ["push", "sms"]
                                                                   for k in KINDS},
        quiet_from="00:00", quiet_to="00:00"), p.account_id, token=p.access_token)
    assert reply.json()["ok"], reply.json()
    return p


async def register_device(n: dict[str, Any], p: SimpleNamespace,
                          access_token: str) -> tuple[str, dict[str, Any]]:
    device = f"fcm-{uuid.uuid4().hex}"
    reply = await n["req"].send(RegisterPushToken(request_id=uid("push"),
                                                  account_id=p.account_id, token=device),
                                p.account_id, token=access_token)
    return device, reply.json()


async def logged_out(a: SimpleNamespace, p: SimpleNamespace, access_token: str) -> None:
    out = await send(a, cmd.Logout(request_id=uid("o")), p.phone, access_token)
    assert out["ok"], out


async def devices(n: dict[str, Any], p: SimpleNamespace) -> set[str]:
    docs = await n["svc"].runtime.db.notify_push_tokens.find(
        {"account_id": p.account_id}).to_list(None)
    return {d["token"] for d in docs}


async def child_enters(a: SimpleNamespace, n: dict[str, Any], p: SimpleNamespace) -> None:
    now = a.clock.now
    await n["pub"].publish(StudentEntered(
        contract=p.contract, school_id="izh-school-42", gate_id="izh-42-gate-1",
        tap_id=uid("tap"), at=now, local_date=now.astimezone(ZoneInfo(TZ)).date().isoformat()),
        p.contract)


def arrivals_by_sms(n: dict[str, Any], p: SimpleNamespace) -> list[dict[str, Any]]:
    """The child's arrival texted to the guardian (their phone also gets codes and alerts)."""
    return [r for r in http_to(n, "/sms", to=p.phone, status=None)
            if "благополучно" in r["body"]["text"]]


async def test_after_a_logout_the_device_of_that_session_gets_no_push_and_the_news_goes_by_sms(
        auth, notify):
    a, n = auth, notify
    mum = await guardian(a, n)
    device, registered = await register_device(n, mum, mum.access_token)
    assert registered["ok"], registered
    assert await devices(n, mum) == {device}

    await logged_out(a, mum, mum.access_token)

    async def gone() -> bool:
        doc = await n["svc"].runtime.db.notify_guardians.find_one({"_id": mum.account_id})
        return not await devices(n, mum) and doc is not None and not doc["has_push_token"]

    await eventually(gone, timeout=60, what="the session's push token deleted by notify")
    # The ended session's access token still verifies for five minutes: it registers nothing.
    again, refused = await register_device(n, mum, mum.access_token)
    assert not refused["ok"] and refused["error"]["code"] == "session_ended", refused
    assert await devices(n, mum) == set()

    await child_enters(a, n, mum)
    [sms] = await eventually(lambda: as_awaitable(arrivals_by_sms(n, mum)),
                             what="the arrival by SMS")
    assert "благополучно в школе" in sms["body"]["text"]
    # (an alert of the login itself may have gone to the device while it was registered)
    pushes = http_to(n, "/push", status=None)
    assert [r for r in pushes if r["body"].get("account_id") == mum.account_id
            and r["body"]["kind"] == "arrived_safely"] == []
    assert not any(again in str(r["body"]) for r in pushes)
    assert not any(device in str(r["body"]) for r in pushes
                   if r["body"]["kind"] == "arrived_safely")


async def test_a_device_registered_from_another_session_keeps_its_pushes_after_a_logout(
        auth, notify):
    a, n = auth, notify
    mum = await guardian(a, n)
    tablet_session = await login(a, mum.phone, mum.password)
    assert tablet_session["ok"], tablet_session
    phone_device, registered = await register_device(n, mum, mum.access_token)
    assert registered["ok"], registered
    tablet_device, registered = await register_device(n, mum, tablet_session["access_token"])
    assert registered["ok"], registered
    assert await devices(n, mum) == {phone_device, tablet_device}

    await logged_out(a, mum, mum.access_token)  # the phone's session only
    await eventually(lambda: _only(n, mum, {tablet_device}), timeout=60,
                     what="the phone's push token deleted, the tablet's kept")

    await child_enters(a, n, mum)
    # (the tablet's "new login" alert may have been pushed to the phone before its logout)
    [push] = await eventually(
        lambda: as_awaitable([r for r in http_to(n, "/push", account_id=mum.account_id)
                              if r["body"]["kind"] == "arrived_safely"]),
        what="the arrival pushed to the tablet")
    assert push["body"]["tokens"] == [tablet_device]
    assert arrivals_by_sms(n, mum) == []


async def _only(n: dict[str, Any], p: SimpleNamespace, expected: set[str]) -> bool:
    return await devices(n, p) == expected
