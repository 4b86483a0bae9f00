"""wallet's money services end to end, in process, against the real broker and the real
MongoDB-protocol server: autopay by date asked once per due date (two schedulers racing, a
fresh process, a due date missed while down), the transit payments switch, and a refund
application paid out exactly once.

One wallet runs for the module with a FakeClock (its scheduler's own period is set out of
reach: the tests run the tick themselves); every test uses its own contracts and schools.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from contracts import wallet as w
from contracts.auth import Role
from contracts.integrations import AutoTopUpCollectionFailed, TopUpReceived
from contracts.transit import FareAssessed
from contracts.types import GuardianRole
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.wallet.handlers import Handlers
from tests.integration.test_wallet_flows import World
from tests.support import FakeClock, Integrator, Requester, TopicReader, uid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def world(service_runner: Any, bootstrap: str, infra: dict[str, str]) -> AsyncIterator[World]:
    clock = FakeClock(datetime(2026, 9, 1, 5, 0, tzinfo=UTC))  # 09:00 in Samara, 1 September
    async with service_runner("wallet", clock=clock, outbox_takeover_s=1e9,
                              scheduled_top_up_every_s=1e6) as svc, \
            Integrator(bootstrap) as integrator, \
            Requester(bootstrap) as requester, \
            TopicReader(bootstrap, "wallet.events.v1") as events, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as decisions, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as dead, \
            TopicReader(bootstrap, "wallet.auto-topup-requests.v1") as auto:
        yield World(svc, clock, infra, integrator, requester, events, decisions, dead, auto)


@pytest.fixture(scope="module")
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in process in front of the module's wallet (httpx over ASGI)."""
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=world.infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=world.infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"it-{uuid.uuid4().hex[:8]}", request_timeout_s=30)
    gw = Gateway(settings, clock=lambda: world.clock.now.timestamp())
    await gw.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.api),
                                     base_url="http://gw", timeout=60) as client:
            yield client
    finally:
        await gw.stop()


async def _call(http: httpx.AsyncClient, method: str, path: str, token: str,
                body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if method != "GET":
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return await http.request(method, path, json=body, headers=headers)


async def _requests(world: World, contract: str) -> list[dict[str, Any]]:
    """Every planned payment asked for ``contract`` so far (the topic read to its end)."""
    return [r.json() for r in await world.auto.read_to_end() if r.key == contract]


async def test_autopay_by_date_asks_each_due_date_once_whoever_runs_the_scheduler(
        world: World) -> None:
    card = await world.open_account()
    await world.accepted(w.SetScheduledTopUp(request_id=uid("req"), contract=card.contract,
                                             days_of_month=[2, 16], amount=1_500_00),
                         card.contract)
    [tick] = [t for t in world.svc.runtime.ticks if t.name == "scheduled-top-up"]
    started = world.clock.now
    try:
        await tick.run()  # the 1st: nothing due
        world.clock.advance(days=1)  # 2 September, 09:00 in Samara
        # two schedulers at once (two instances), then a fresh process on the same database
        one, other = Handlers(world.svc.runtime), Handlers(world.svc.runtime)
        counts = await asyncio.gather(one.ask_scheduled_top_ups(),
                                      other.ask_scheduled_top_ups())
        assert sum(counts) == 1  # one of them asked, the other found it done
        assert await Handlers(world.svc.runtime).ask_scheduled_top_ups() == 0
        [asked] = await world.auto.wait_for(lambda r: r.key == card.contract)
        assert asked.json()["request_id"] == f"sched-{card.contract}-2026-09-02"
        assert (asked.json()["reason"], asked.json()["due_date"], asked.json()["amount"]) == (
            "schedule", "2026-09-02", 1_500_00)
        # the integrator collects it: the payment answers the request
        await world.integrator.publish(TopUpReceived(
            payment_id=uid("pay"), contract=card.contract, amount=1_500_00,
            sub_balance="canteen", channel="auto_top_up",
            auto_top_up_request_id=asked.json()["request_id"], paid_at=world.clock.now),
            card.contract)
        await world.event("TopUpApplied", card.contract)
        # down from the 15th to the 18th: the 16th is asked once when the scheduler is back
        world.clock.advance(days=16)
        await tick.run()
        await tick.run()
        second = await world.auto.wait_for(lambda r: r.key == card.contract, count=2)
        assert second[-1].json()["due_date"] == "2026-09-16"
        failure = AutoTopUpCollectionFailed(request_id=second[-1].json()["request_id"],
                                            contract=card.contract, reason="card_declined",
                                            failed_at=world.clock.now)
        await world.integrator.publish(failure, card.contract)
        failed = await world.event("AutoTopUpFailed", card.contract)
        assert failed.json()["amount"] == 1_500_00
    finally:
        world.clock.now = started
    assert len(await _requests(world, card.contract)) == 2
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 1_500_00


async def test_a_paused_autopay_asks_nothing_and_reads_back_paused(world: World) -> None:
    card = await world.open_account()
    await world.accepted(w.SetScheduledTopUp(request_id=uid("req"), contract=card.contract,
                                             days_of_month=[2], amount=500_00), card.contract)
    await world.accepted(w.ChangeScheduledTopUp(request_id=uid("req"), contract=card.contract,
                                                action="pause"), card.contract)
    reply = await world.command(w.GetPaymentSettings(contract=card.contract), card.contract,
                                world.token(card.contract, GuardianRole.CO_GUARDIAN))
    assert reply["scheduled_top_up"]["paused"] is True
    assert reply["scheduled_top_up"]["next_due_date"] is None
    started = world.clock.now
    world.clock.advance(days=1)
    try:
        await Handlers(world.svc.runtime).ask_scheduled_top_ups()
    finally:
        world.clock.now = started
    account = await world.account(card.contract)
    assert account.scheduled_top_up is not None and account.scheduled_top_up.asked == ()
    assert await _requests(world, card.contract) == []


async def test_transit_payments_switched_off_decline_the_fare_with_their_reason(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00, "transit")
    await world.accepted(w.SetServices(request_id=uid("req"), contract=card.contract,
                                       transit_payments=False), card.contract)
    reply = await world.command(w.GetPaymentSettings(contract=card.contract), card.contract,
                                world.token(card.contract))
    assert reply["transit_payments"] is False
    switched = await world.event("TransitPaymentsSwitched", card.contract)
    assert switched.json()["enabled"] is False
    await world.integrator.publish(FareAssessed(
        ride_id=uid("ride"), contract=card.contract, card_uid=card.card_uid, amount=40_00,
        tapped_at=world.clock.now), card.contract)
    declined = await world.event("FareDeclined", card.contract)
    assert declined.json()["reason"] == "transit_payments_off"
    account = await world.consistent(card.contract)
    assert account.balances.transit == 100_00 and not account.fares_unpaid


async def test_a_refund_application_is_handled_by_the_school_and_paid_out_exactly_once(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 420_50)
    await world.top_up(card.contract, 35_00, "transit")
    application = uid("app")
    await world.accepted(w.SubmitApplication(
        request_id=application, contract=card.contract, kind="refund",
        reason="leaving_school", comment="Переезжаем в другой город"), card.contract)
    admin = world.token(None, None, staff=Role.SCHOOL_ADMIN, school_id=card.school_id)
    stranger = world.token(None, None, staff=Role.SCHOOL_ADMIN, school_id=uid("other"))
    refused = await world.command(w.HandleApplication(
        request_id=uid("req"), contract=card.contract, application_id=application,
        decision="accept"), card.contract, stranger)
    assert refused["error"]["code"] == "forbidden"
    await world.accepted(w.HandleApplication(
        request_id=uid("req"), contract=card.contract, application_id=application,
        decision="accept"), card.contract, admin)
    done = [w.HandleApplication(request_id=uid("req"), contract=card.contract,
                                application_id=application, decision="done",
                                comment="Возврат на карту родителя") for _ in range(3)]
    replies = await asyncio.gather(*(world.command(m, card.contract, admin) for m in done))
    assert all(r["ok"] for r in replies), replies
    changed = await world.event("ApplicationStatusChanged", card.contract,
                                lambda r: r.json()["status"] == "done")
    assert changed.json()["refunded"] == 455_50
    listing = await world.command(w.GetApplications(contract=card.contract), card.contract,
                                  world.token(card.contract))
    [listed] = listing["applications"]
    assert (listed["status"], listed["refunded"], listed["staff_comment"]) == (
        "done", 455_50, "Возврат на карту родителя")
    payout = [e for e in await world.entries(card.contract) if e.operation_id == application]
    assert sorted(e.amount for e in payout) == [-420_50, -35_00, 455_50]
    account = await world.consistent(card.contract)
    assert account.balances.money == 0 and account.status.value == "closed"
    statement = await world.command(w.GetStatement(contract=card.contract, kinds=["payout"]),
                                    card.contract, world.token(card.contract))
    assert [(x["kind"], x["amount"]) for x in statement["lines"]] == [("payout", -455_50)]
    assert len([r for r in world.events.records if r.key == card.contract
                and r.type.endswith("ApplicationStatusChanged")]) == 3


async def test_the_money_services_are_reachable_through_the_gateway(
        world: World, http: httpx.AsyncClient) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00)
    parent = world.token(card.contract)
    child = f"/v1/children/{card.contract}"
    put = await _call(http, "PUT", f"{child}/scheduled-top-up", parent,
                      {"days_of_month": [1, 15], "amount": 1_500_00})
    assert put.status_code == 200, put.text
    paused = await _call(http, "POST", f"{child}/scheduled-top-up/switch", parent,
                         {"action": "pause"})
    assert paused.status_code == 200, paused.text
    off = await _call(http, "PATCH", f"{child}/services", parent, {"transit_payments": False})
    assert off.status_code == 200, off.text
    settings = (await _call(http, "GET", f"{child}/payment-settings", parent)).json()
    assert settings["transit_payments"] is False
    assert (settings["scheduled_top_up"]["days_of_month"],
            settings["scheduled_top_up"]["paused"]) == ([1, 15], True)
    bad = await _call(http, "PUT", f"{child}/scheduled-top-up", parent,
                      {"days_of_month": [32], "amount": 100})
    assert bad.status_code == 422

    applied = await _call(http, "POST", f"{child}/applications", parent,
                          {"kind": "new_card", "reason": "lost", "comment": "Потеряна"})
    assert applied.status_code == 200, applied.text
    application = applied.json()["request_id"]
    admin = world.token(None, None, staff=Role.SCHOOL_ADMIN, school_id=card.school_id)
    listed = (await _call(http, "GET", f"/v1/schools/{card.school_id}/applications?"
                          "status=submitted", admin)).json()
    assert [a["application_id"] for a in listed["applications"]] == [application]
    refused = await _call(http, "POST", f"{child}/applications/{application}/decision", admin,
                          {"decision": "refuse"})
    assert (refused.status_code, refused.json()["code"]) == (422, "comment_required")
    accepted = await _call(http, "POST", f"{child}/applications/{application}/decision",
                           admin, {"decision": "accept", "comment": "Карта будет в пятницу"})
    assert accepted.status_code == 200, accepted.text
    mine = (await _call(http, "GET", f"{child}/applications", parent)).json()
    [status] = mine["applications"]
    assert (status["status"], status["staff_comment"]) == ("accepted", "Карта будет в пятницу")
    stranger = world.token(None, None, staff=Role.SCHOOL_ADMIN, school_id=uid("other"))
    forbidden = await _call(http, "GET", f"{child}/applications", stranger)
    assert forbidden.status_code == 403
