"""A session that simply runs out (20 idle minutes, or 12 hours after login) ends like a
logged-out one: auth's periodic sweep ends it and emits SessionEnded (reason ``expired``), so
notify stops pushing to the device registered from it. Pure rules, the sweep over the fakes,
and auth and notify through the real broker (auth's sweep every half second here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from contracts import auth as cmd
from services.auth.domain import Session
from services.auth.domain.events import SessionRevoked
from tests.integration.test_auth_flows import ScriptedClock
from tests.security.test_push_tokens_end_with_session import (
    devices,
    guardian,
    notify,
    register_device,
)
from tests.support import Integrator, Requester, TopicReader, eventually, uid

__all__ = ["notify"]  # notify in-process, on this module's auth clock

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _session() -> Session:
    return Session.start(session_id="ses-1", account_id="acc-1", epoch=0,
                         refresh_token_hash="rt", device="Phone", ip_hash="ip", now=T0)


@pytest.mark.unit
def test_a_session_expires_only_once_its_refresh_lifetime_ran_out_and_only_once() -> None:
    s = _session()
    s.pull_events()
    assert not s.expire(T0 + timedelta(minutes=19, seconds=59))
    assert s.pull_events() == []
    assert s.expire(T0 + timedelta(minutes=45))
    [ended] = s.pull_events()
    assert isinstance(ended, SessionRevoked) and ended.reason == "expired"
    assert ended.occurred_at == T0 + timedelta(minutes=20)  # when it ran out, not the sweep
    assert not s.expire(T0 + timedelta(hours=1)) and s.pull_events() == []


@pytest.mark.unit
def test_a_session_in_use_runs_out_twelve_hours_after_login_and_a_revoked_one_never() -> None:
    s = _session()
    for minutes in range(10, 12 * 60, 10):
        s.touch(T0 + timedelta(minutes=minutes), 0)
    assert not s.expire(T0 + timedelta(hours=11, minutes=59))
    assert s.expire(T0 + timedelta(hours=12))
    out = _session()
    out.revoke(T0 + timedelta(minutes=1))
    out.pull_events()
    assert not out.expire(T0 + timedelta(days=1)) and out.pull_events() == []


@pytest.mark.unit
async def test_the_sweep_ends_expired_sessions_once_and_leaves_live_ones() -> None:
    from tests.unit.auth.test_auth_handlers import _auth, _forget, _registered

    rt, h = _auth()
    p = await _registered(rt, h)
    _forget(rt)
    await h.sweep_expired_sessions()
    assert rt.emitted(cmd.SessionEnded) == []  # still alive
    rt.now += timedelta(minutes=21)
    await h.sweep_expired_sessions()
    [ended] = rt.emitted(cmd.SessionEnded)
    assert ended.session_id == p.session_id and ended.reason == "expired"
    assert ended.account_id == p.account_id
    stored = await rt.db.auth_sessions.find_one({"_id": p.session_id})
    assert stored["revoke_reason"] == "expired" and stored["live"] is False
    _forget(rt)
    await h.sweep_expired_sessions()
    assert rt.emitted(cmd.SessionEnded) == []  # told once


@pytest.fixture(scope="module")
async def auth(service_runner, infra, bootstrap) -> AsyncIterator[SimpleNamespace]:
    """auth in-process with a fake clock, sweeping expired sessions every half second."""
    clock = ScriptedClock(datetime(2026, 9, 1, 6, 0, tzinfo=UTC))
    async with service_runner("auth", clock=clock, private_key=infra["AUTH_PRIVATE_KEY"],
                              pepper=f"pepper-{uid()}", session_sweep_interval_s=0.5) as svc, \
            Requester(bootstrap) as requester, Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp, \
            TopicReader(bootstrap, "auth.events.v1") as events:
        yield SimpleNamespace(svc=svc, db=svc.runtime.db, clock=clock, req=requester,
                              integrator=integrator, otp=otp, events=events,
                              public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"])


@pytest.mark.integration
async def test_the_push_token_of_a_session_that_ran_out_is_dropped_by_notify(auth, notify):
    a, n = auth, notify
    mum = await guardian(a, n)
    device, registered = await register_device(n, mum, mum.access_token)
    assert registered["ok"], registered
    assert await devices(n, mum) == {device}

    a.clock.now += timedelta(minutes=21)  # nobody used the session: it ran out

    async def gone() -> bool:
        doc = await n["svc"].runtime.db.notify_guardians.find_one({"_id": mum.account_id})
        return not await devices(n, mum) and doc is not None and not doc["has_push_token"]

    await eventually(gone, timeout=60, what="the expired session's push token deleted")
    ended = [r.json() for r in await a.events.read_to_end()
             if r.headers.get("ce_type") == cmd.SessionEnded.TYPE
             and r.json()["account_id"] == mum.account_id]
    assert [e["reason"] for e in ended] == ["expired"]
