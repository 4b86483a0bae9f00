"""notify in-process with the local SMTP and HTTP sinks (deploy/local/sinks.py), shared by the
notify integration modules: guardians announced the way auth announces them, preferences set
the way the app sets them, and what the sinks received."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from contracts.auth import GuardianContacts, GuardianLinked, Role
from contracts.notify import RegisterPushToken, SetPreferences
from deploy.local.sinks import read_http, start_sinks
from services.runtime.tokens import issue_access_token
from tests.support import Integrator, Requester, TopicReader, eventually, uid

TZ = "Europe/Samara"
DELIVERIES = "notify.deliveries.v1"


class ShiftedClock:
    """Real time plus an offset that a test may move forward (quiet hours ending)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def account() -> str:
    return f"acc_{uuid.uuid4().hex[:16]}"


def contract() -> str:
    return f"{random.randrange(10**7, 10**8)}"


def phone() -> str:
    return f"+7912{random.randrange(10**6, 10**7)}"


@asynccontextmanager
async def notify_stack(service_runner: Callable[..., Any], bootstrap: str,
                       infra: dict[str, str], sinks_dir: Path,
                       clock: Callable[[], datetime] | None = None,
                       ) -> AsyncIterator[dict[str, Any]]:
    """notify (fast sender polls and retries), the sinks, an integrator, an app requester and
    a reader of the delivery topic; on ``clock`` (another service's, whose tokens it checks)
    or real time that a test may shift."""
    sinks = await start_sinks(sinks_dir)
    clock = clock or ShiftedClock()
    overrides = dict(smtp_port=sinks.smtp_port, sms_url=f"{sinks.http_url}/sms",
                     push_url=f"{sinks.http_url}/push", send_backoff_ms=100,
                     send_poll_ms=100)
    try:
        async with service_runner("notify", clock=clock, **overrides) as svc, \
                Integrator(bootstrap) as integrator, Requester(bootstrap) as requester, \
                TopicReader(bootstrap, DELIVERIES) as deliveries:
            yield {"svc": svc, "sinks": sinks, "clock": clock, "pub": integrator,
                   "req": requester, "deliveries": deliveries, "key": infra["AUTH_PRIVATE_KEY"]}
    finally:
        await sinks.stop()


def token(stack: dict[str, Any], account_id: str) -> str:
    return issue_access_token(stack["key"], account_id=account_id, session_id=uid("ses"),
                              role=Role.PARENT)


async def make_guardian(stack: dict[str, Any], child: str, *, push: bool, sms: bool = False,
                        email: str | None = None, quiet: tuple[str, str] = ("00:00", "00:00"),
                        role: str = "primary") -> tuple[str, str]:
    """A guardian of ``child`` as auth announces it, with preferences set by the app."""
    acc, tel = account(), phone()
    now = datetime.now(UTC)
    await stack["pub"].publish(GuardianContacts(account_id=acc, phone=tel, email=email,
                                                time_zone=TZ, updated_at=now), acc)
    await stack["pub"].publish(GuardianLinked(account_id=acc, contract=child, role=role,
                                              at=now), acc)
    kinds = ["arrived_safely", "child_entered", "child_left", "canteen_purchase", "top_up"]
    wanted = ["push", "sms"] if sms else ["push"]
    reply = await stack["req"].send(SetPreferences(
        request_id=uid("pref"), account_id=acc, channels={k: wanted for k in kinds},
        quiet_from=quiet[0], quiet_to=quiet[1]), acc, token=token(stack, acc))
    assert reply.json()["ok"] is True
    if push:
        reply = await stack["req"].send(RegisterPushToken(
            request_id=uid("push"), account_id=acc, token=f"fcm-{uuid.uuid4().hex}"), acc,
            token=token(stack, acc))
        assert reply.json()["ok"] is True
    db = stack["svc"].runtime.db

    async def ready() -> bool:
        doc = await db.notify_guardians.find_one({"_id": acc})
        return bool(doc and doc["phone"] == tel and doc["children"]
                    and doc["has_push_token"] == push)

    await eventually(ready, what=f"guardian {acc} projected")
    return acc, tel


def http_to(stack: dict[str, Any], path: str, *, account_id: str | None = None,
            to: str | None = None, status: int | None = 200) -> list[dict[str, Any]]:
    return [r for r in read_http(stack["sinks"].directory)
            if r["path"] == path and (status is None or r["status"] == status)
            and (account_id is None or r["body"].get("account_id") == account_id)
            and (to is None or r["body"].get("to") == to)]


async def as_awaitable(value: Any) -> Any:
    """``value`` as the awaitable ``eventually`` polls."""
    return value
