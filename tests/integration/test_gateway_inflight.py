"""The gateway in-process against the real broker, with no service answering: a call that
waits past the deadline is a 504 problem, and a call still waiting when the instance stops is
a 503 problem (retry with the same Idempotency-Key), never another call's answer."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.auth import ChildGrant, Role
from contracts.types import GuardianRole
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.broker import provision_topics
from services.runtime.tokens import issue_access_token
from tests.integration.conftest import infra_settings
from tests.support import eventually, uid

pytestmark = pytest.mark.integration

CONTRACT = f"{random.randrange(10**7, 10**8)}"


@pytest.fixture
async def gateway(infra: dict[str, str]) -> AsyncIterator[Gateway]:
    await provision_topics(infra_settings(infra))
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"it-{uuid.uuid4().hex[:8]}", request_timeout_s=1.5)
    gw = Gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def client(gw: Gateway, infra: dict[str, str]) -> httpx.AsyncClient:
    token = issue_access_token(infra["AUTH_PRIVATE_KEY"], account_id="acc_inflight01",
                               session_id=uid("ses"), role=Role.PARENT,
                               children=[ChildGrant(contract=CONTRACT,
                                                    role=GuardianRole.PRIMARY)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.api), base_url="http://gw",
                             headers={"Authorization": f"Bearer {token}"})


async def test_a_call_nobody_answers_is_a_504_problem_and_leaves_nothing_waiting(
        gateway: Gateway, infra: dict[str, str]) -> None:
    async with client(gateway, infra) as http:
        answer = await http.get(f"/v1/children/{CONTRACT}/balance")
    assert answer.status_code == 504
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "reply_timeout"
    assert gateway.requests.pending == {}


async def test_a_call_waiting_when_the_instance_stops_is_a_503_problem(
        gateway: Gateway, infra: dict[str, str]) -> None:
    async with client(gateway, infra) as http:
        call = asyncio.create_task(http.post(
            f"/v1/children/{CONTRACT}/block", headers={"Idempotency-Key": str(uuid.uuid4())}))

        async def waiting() -> bool:
            return bool(gateway.requests.pending)

        await eventually(waiting, timeout=10, interval=0.01, what="the call to wait")
        await gateway.stop()
        answer = await call
        assert answer.status_code == 503
        assert answer.json()["code"] == "gateway_stopping"
        assert answer.headers["retry-after"] == "1"
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["replies"] is False
        after = await http.get(f"/v1/children/{CONTRACT}/balance")
        assert after.status_code == 503  # a stopped instance takes no new calls
