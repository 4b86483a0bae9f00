"""Liveness of a stuck consumer against the real broker: a consumer with its partitions
assigned and nothing to read stays alive; once a handler awaits a future that never
resolves, /healthz answers 503 (consumer_progress false) within the stall setting."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from contracts.integrations import GateTapped
from services.runtime.broker import make_broker
from services.runtime.consumer import Consumer, Inbound
from services.runtime.http import HealthServer
from tests.integration.conftest import infra_settings
from tests.integration.test_access_gate import local, new_card, school, tap
from tests.support import Integrator, eventually, uid

pytestmark = pytest.mark.integration

STALL_S = 2.0


async def test_a_consumer_stuck_in_a_handler_fails_healthz_within_the_stall_setting(
        bootstrap: str, infra: dict[str, str]) -> None:
    service, group = uid("stuck"), uid("stuck-group")
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    entered = asyncio.Event()
    card = new_card(school())
    stuck_tap = tap(card, local("07:50"))

    async def stuck(msg: Inbound[GateTapped]) -> None:
        if msg.message.tap_id != stuck_tap.tap_id:
            return  # taps other tests left on the topic pass at once
        entered.set()
        await never

    async def ready() -> dict[str, bool]:
        return {}

    broker = make_broker(service, infra_settings(infra))
    consumer = Consumer(broker, service, {GateTapped: stuck}, group_id=group, batch_max=10)
    health = HealthServer("127.0.0.1", 0, ready, lambda: consumer.liveness(STALL_S))
    await broker.start()
    port = await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async def assigned() -> bool:
                kafka = consumer.subscriber.consumer
                return kafka is not None and bool(kafka.assignment())

            await eventually(assigned, timeout=60, what="the consumer's partitions assigned")
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < 2 * STALL_S:  # idle: longer than the stall
                answer = await http.get("/healthz")
                assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.2)

            async with Integrator(bootstrap) as pub:
                await pub.publish(stuck_tap, card.card_uid)
            await asyncio.wait_for(entered.wait(), 60)
            stuck_at = time.monotonic()

            async def unhealthy() -> httpx.Response | None:
                answer = await http.get("/healthz")
                return answer if answer.status_code == 503 else None

            answer = await eventually(unhealthy, timeout=STALL_S + 30,
                                      what="/healthz answering 503")
            assert time.monotonic() - stuck_at >= STALL_S
            assert answer.json() == {"alive": False, "consumer": True,
                                     "consumer_progress": False}
    finally:
        never.cancel()
        await health.stop()
        await broker.stop()
