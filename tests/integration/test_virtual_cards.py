"""A virtual card end to end: access, wallet and transit in-process against the real broker and
the real MongoDB-protocol server, on one FakeClock. The issuer issues a child's plastic card,
then a phone credential (``VirtualCardIssued``, signed); the phone passes the gate, buys in the
canteen and rides on the same account. The parent lists the child's cards and blocks the phone
alone through the gateway (in-process, httpx over ASGI: ``BlockCard`` with its uid): the gate,
the till and the validators refuse it while the plastic card keeps working.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from contracts import access as a
from contracts.auth import ChildGrant, Role
from contracts.catalog import DLQ_CODE
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
    ValidatorTapped,
    VirtualCardIssued,
)
from contracts.types import GuardianRole
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.tokens import issue_access_token
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, uid

pytestmark = pytest.mark.integration

ZONE_NAME = "Europe/Samara"
ZONE = ZoneInfo(ZONE_NAME)
MONDAY = date.today() - timedelta(days=date.today().weekday() + 7)  # last week's Monday


def local(hhmm: str, day: date = MONDAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=ZONE).astimezone(UTC)


@dataclass
class Stack:
    clock: FakeClock
    infra: dict[str, str]
    pub: Integrator
    req: Requester
    allow: TopicReader
    deny: TopicReader
    gate: TopicReader
    till: TopicReader
    wallet_events: TopicReader
    transit_dlq: TopicReader
    http: httpx.AsyncClient

    def parent(self, contract: str) -> str:
        return issue_access_token(self.infra["AUTH_PRIVATE_KEY"],
                                  account_id=f"acc_{uuid.uuid4().hex[:12]}",
                                  session_id=uid("ses"), role=Role.PARENT,
                                  children=[ChildGrant(contract=contract,
                                                       role=GuardianRole.PRIMARY)],
                                  now=self.clock.now.timestamp())


@pytest.fixture(scope="module")
async def stack(service_runner: Any, bootstrap: str,
                infra: dict[str, str]) -> AsyncIterator[Stack]:
    clock = FakeClock(local("18:00", MONDAY + timedelta(days=4)))
    # outbox_takeover_s: see tests/integration/test_wallet_flows.py (fake-clock records).
    async with service_runner("access", clock=clock, outbox_takeover_s=1e9), \
            service_runner("wallet", clock=clock, outbox_takeover_s=1e9), \
            service_runner("transit", clock=clock, outbox_takeover_s=1e9), \
            Integrator(bootstrap) as pub, Requester(bootstrap) as req, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow, \
            TopicReader(bootstrap, "transit.deny-list.v1") as deny, \
            TopicReader(bootstrap, "access.gate-decisions.v1") as gate, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as till, \
            TopicReader(bootstrap, "wallet.events.v1") as wallet_events, \
            TopicReader(bootstrap, "transit.dead-letter.v1") as transit_dlq:
        settings = Settings(
            infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                               auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                               kafka_fetch_max_wait_ms=10, log_json=False),
            instance_id=f"it-{uuid.uuid4().hex[:8]}", request_timeout_s=60)
        gw = Gateway(settings, clock=lambda: clock.now.timestamp())
        await gw.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.api),
                                         base_url="http://gw", timeout=90) as http:
                yield Stack(clock, infra, pub, req, allow, deny, gate, till, wallet_events,
                            transit_dlq, http)
        finally:
            await gw.stop()


async def gate_tap(s: Stack, school_id: str, card: str, at: datetime) -> dict[str, Any]:
    tap = GateTapped(tap_id=uid("tap"), gate_id="gate-1", school_id=school_id, card_uid=card,
                     direction="in", tapped_at=at)
    await s.pub.publish(tap, card)
    [r] = await s.gate.wait_for(lambda r: r.json()["tap_id"] == tap.tap_id, timeout=60)
    return dict(r.json())


async def sale(s: Stack, school_id: str, card: str, at: datetime) -> dict[str, Any]:
    req = CanteenSaleRequested(sale_id=uid("sale"), terminal_id="till-1", school_id=school_id,
                               card_uid=card, items=[SaleItem(
                                   sku="borsch", name="Борщ", category="hot_meal", qty=1,
                                   unit_price=85_00)], sold_at=at)
    await s.pub.publish(req, card)
    [r] = await s.till.wait_for(lambda r: r.json()["sale_id"] == req.sale_id, timeout=60)
    return dict(r.json())


def ride(card: str, at: datetime) -> ValidatorTapped:
    return ValidatorTapped(tap_id=uid("val"), validator_id="val-29", vehicle_id="bus-29",
                           operator_id="izhevsk-gortrans", route="29", mode="bus",
                           stop_id="stop-central-square", card_uid=card, tapped_at=at)


async def fare_debited(s: Stack, contract: str, count: int) -> None:
    await s.wallet_events.wait_for(
        lambda r: r.key == contract and r.type.endswith(".FareDebited"), count=count,
        timeout=60)


async def test_a_virtual_card_works_like_the_plastic_one_and_blocks_on_its_own(
        stack: Stack) -> None:
    s = stack
    school_id = f"vc-{uid('s')[2:].lower()}"
    admin = issue_access_token(s.infra["AUTH_PRIVATE_KEY"], account_id="acc_vcadmin0001",
                               session_id=uid("ses"), role=Role.SCHOOL_ADMIN,
                               school_id=school_id, now=s.clock.now.timestamp())
    schedule = a.SetSchoolSchedule(
        request_id=uid("sched"), school_id=school_id, time_zone=ZONE_NAME,
        hours=[a.DayHours(weekday=d, opens="07:00", closes="19:00", first_lesson="08:30")
               for d in range(5)], absence_cutoff="10:00")
    answer = await s.req.send(schedule, school_id, token=admin, timeout=120)
    assert answer.json()["ok"] is True

    contract = f"{random.randrange(10**7, 10**8)}"
    plastic, phone = chip_uid(), chip_uid()
    await s.pub.publish(CardIssued(
        contract=contract, card_uid=plastic, school_id=school_id, school_tz=ZONE_NAME,
        student_id=uid("stu"), class_name="5A", birth_date=date(2014, 3, 8),
        issued_at=local("06:00") - timedelta(days=30)), contract)
    await s.wallet_events.wait_for(
        lambda r: r.key == contract and r.type.endswith(".AccountOpened"), timeout=60)
    for sub, amount in (("canteen", 500_00), ("transit", 300_00)):
        await s.pub.publish(TopUpReceived(payment_id=uid("pay"), contract=contract,
                                          amount=amount, sub_balance=sub,
                                          channel="bank_card", paid_at=local("06:00")),
                            contract)
    await s.pub.publish(VirtualCardIssued(
        contract=contract, card_uid=phone, kind="phone_nfc", school_id=school_id,
        school_tz=ZONE_NAME, class_name="5A", issued_at=local("06:30")), contract)
    await s.allow.wait_for(lambda r: r.key == phone and r.json()["allowed"], timeout=60)
    await s.wallet_events.wait_for(
        lambda r: r.key == contract and r.type.endswith(".TopUpApplied"), count=2, timeout=60)

    # the phone: in at the gate, lunch in the canteen, a bus ride — all on the child's account
    assert (await gate_tap(s, school_id, phone, local("08:05")))["allowed"] is True
    lunch = await sale(s, school_id, phone, local("12:00"))
    assert (lunch["approved"], lunch["balance_after"]) == (True, 415_00)
    await s.pub.publish(ride(phone, local("15:00")), phone)
    await fare_debited(s, contract, 1)

    # the parent sees both cards and blocks the phone alone
    parent = {"Authorization": f"Bearer {s.parent(contract)}"}
    listed = await s.http.get(f"/v1/children/{contract}/cards", headers=parent)
    assert listed.status_code == 200, listed.text
    assert [(c["card_uid"], c["kind"], c["state"]) for c in listed.json()["cards"]] == [
        (plastic, None, "active"), (phone, "phone_nfc", "active")]
    blocked = await s.http.post(f"/v1/children/{contract}/cards/{phone}/block",
                                headers={**parent, "Idempotency-Key": str(uuid.uuid4())})
    assert blocked.status_code == 200, blocked.text
    await s.allow.wait_for(lambda r: r.key == phone and not r.json()["allowed"], timeout=60)
    await s.deny.wait_for(lambda r: r.key == phone and r.json()["denied"], timeout=60)
    s.clock.advance(minutes=1)
    after = s.clock.now - timedelta(seconds=10)

    refused = await gate_tap(s, school_id, phone, after)
    assert (refused["allowed"], refused["reason"]) == (False, "card_blocked")
    declined = await sale(s, school_id, phone, after)
    assert (declined["approved"], declined["reason"]) == (False, "card_blocked")
    bus = ride(phone, after)
    await s.pub.publish(bus, phone)
    [dead] = await s.transit_dlq.wait_for(lambda r: r.key == phone, timeout=60)
    assert dead.headers[DLQ_CODE] == "card_blocked"

    # the plastic card keeps working everywhere
    assert (await gate_tap(s, school_id, plastic, after))["allowed"] is True
    assert (await sale(s, school_id, plastic, after))["balance_after"] == 330_00
    await s.pub.publish(ride(plastic, after), plastic)
    await fare_debited(s, contract, 2)
    fares = [r for r in await s.wallet_events.read_to_end()
             if r.key == contract and r.type.endswith(".FareDebited")]
    assert len(fares) == 2  # the phone's refused ride was never charged
    listed = await s.http.get(f"/v1/children/{contract}/cards", headers=parent)
    assert [c["state"] for c in listed.json()["cards"]] == ["active", "blocked"]

    # and the other way round: the phone unblocked, the plastic card blocked alone
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answer = await s.http.post(f"/v1/children/{contract}/cards/{phone}/unblock",
                               headers={**parent, **key})
    assert answer.status_code == 200, answer.text
    answer = await s.http.post(f"/v1/children/{contract}/cards/{plastic}/block",
                               headers={**parent, "Idempotency-Key": str(uuid.uuid4())})
    assert answer.status_code == 200, answer.text
    await s.allow.wait_for(lambda r: r.key == phone and r.json()["allowed"], count=2,
                           timeout=60)
    await s.allow.wait_for(lambda r: r.key == plastic and not r.json()["allowed"], timeout=60)
    await s.deny.wait_for(lambda r: r.key == plastic and r.json()["denied"], timeout=60)
    s.clock.advance(minutes=1)
    later = s.clock.now - timedelta(seconds=10)
    assert (await gate_tap(s, school_id, plastic, later))["reason"] == "card_blocked"
    assert (await sale(s, school_id, plastic, later))["reason"] == "card_blocked"
    assert (await sale(s, school_id, phone, later))["balance_after"] == 245_00
    await s.pub.publish(ride(phone, later), phone)
    await fare_debited(s, contract, 3)
