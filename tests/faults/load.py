"""A small city's mixed traffic and its reference model, for the fault scenarios.

``City.build`` makes the events an integrator and apps would send — top-ups, canteen sales
(a few for unknown cards), turnstile taps, validator taps and balance queries — and records
what must come of each. ``City.outcome`` reads what the services produced (decision and event
topics, replies, dead-letter topics, the wallet ledger, every outbox) and counts, against the
model: events lost (no outcome), applied twice (two different outcome messages for one
business id, or a payment credited twice), balances that differ from the model, queries left
unanswered, handler failures (``processing_failed``) and records left unpublished.

The model: every card starts with enough money that every sale of a known card and every fare
is paid whatever the delivery order, so a contract's money is its top-ups, minus its sales,
minus the fares transit assessed (one per ride id) plus the refunds it corrected (one per
correction id), as read from transit's own topic.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from contracts.auth import ChildGrant, Role
from contracts.catalog import DLQ_CODE, dead_letter_topic
from contracts.envelope import ContractModel, Envelope
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
    ValidatorTapped,
)
from contracts.wallet import GetBalance
from deploy.local import stack as devstack
from services.runtime.tokens import issue_access_token
from tests.faults.conftest import World
from tests.support import Integrator, Record, TopicReader, chip_uid, eventually, uid

SCHOOL = "izh-fault-1"
START_BALANCE = 900_000_00
SERVICES = devstack.SERVICES
OUTPUTS = ("wallet.sale-decisions.v1", "access.gate-decisions.v1", "transit.events.v1",
           "apps.replies.v1", *(dead_letter_topic(s) for s in SERVICES))


@dataclass
class Event:
    message: ContractModel
    key: str
    headers: dict[str, str] = field(default_factory=dict)
    reply_to: str | None = None
    envelope: Envelope | None = None

    async def publish(self, integrator: Integrator) -> Envelope:
        """Publish; the envelope is kept, so a redelivery is the very same record."""
        self.envelope = await integrator.publish(self.message, self.key, headers=self.headers,
                                                 reply_to=self.reply_to,
                                                 envelope=self.envelope)
        return self.envelope


@dataclass
class City:
    run: str
    cards: list[CardIssued]
    events: list[Event]
    top_ups: dict[str, tuple[str, int]]  # payment id -> contract, amount
    sales: dict[str, tuple[str | None, int]]  # sale id -> contract (None: unknown card), total
    gate_taps: set[str]
    validator_taps: dict[str, str]  # tap id -> contract
    queries: set[str] = field(default_factory=set)  # correlation ids of balance queries

    @classmethod
    def build(cls, rng: random.Random, events: int, *, cards: int = 40,
              private_key: str) -> City:
        run = uid("city")
        now = datetime.now(UTC)
        issued = [CardIssued(contract=f"{rng.randrange(10**7, 10**8)}", card_uid=chip_uid(rng),
                             school_id=SCHOOL, school_tz="Europe/Samara", student_id=uid("stu"),
                             class_name="3В", birth_date=date(2016, 6, 1), issued_at=now)
                  for _ in range(cards)]
        city = cls(run, issued, [], {}, {}, set(), {})
        day = now - timedelta(hours=10)
        for i in range(events):
            card = rng.choice(issued)
            at = day + timedelta(seconds=3 * i)  # per card in time order: no late taps
            roll = rng.random()
            if roll < 0.3:
                amount = rng.randrange(1, 50) * 100
                top_up = TopUpReceived(payment_id=f"{run}-p{i}", contract=card.contract,
                                       amount=amount, channel="terminal", paid_at=now)
                city.top_ups[top_up.payment_id] = (card.contract, amount)
                city.events.append(Event(top_up, card.contract))
            elif roll < 0.6:
                known = rng.random() < 0.95
                price = rng.randrange(20, 120) * 100
                sale = CanteenSaleRequested(
                    sale_id=f"{run}-s{i}", terminal_id=f"till-{i % 3}", school_id=SCHOOL,
                    card_uid=card.card_uid if known else chip_uid(rng), sold_at=now,
                    items=[SaleItem(sku="meal", name="Обед", category="hot_meal", qty=1,
                                    unit_price=price)])
                city.sales[sale.sale_id] = (card.contract if known else None, price)
                city.events.append(Event(sale, sale.card_uid))
            elif roll < 0.8:
                tap = GateTapped(tap_id=f"{run}-g{i}", gate_id=f"gate-{i % 4}",
                                 school_id=SCHOOL, card_uid=card.card_uid,
                                 direction=rng.choice(["in", "out"]), tapped_at=at)
                city.gate_taps.add(tap.tap_id)
                city.events.append(Event(tap, tap.card_uid))
            elif roll < 0.95:
                ride = ValidatorTapped(
                    tap_id=f"{run}-v{i}", validator_id=f"val-{i % 7}", vehicle_id="bus-1",
                    route=rng.choice(["29", "12", "7"]), mode="bus", stop_id="stop-1",
                    card_uid=card.card_uid, tapped_at=at)
                city.validator_taps[ride.tap_id] = card.contract
                city.events.append(Event(ride, ride.card_uid))
            else:
                token = issue_access_token(private_key, account_id=f"acc_{card.contract}",
                                           session_id=uid("ses"), role=Role.PARENT,
                                           children=[ChildGrant(contract=card.contract,
                                                                role="primary")],
                                           ttl_s=6 * 3600)
                query = Event(GetBalance(contract=card.contract), card.contract,
                              headers={"authorization": f"Bearer {token}"},
                              reply_to="apps.replies.v1")
                query.envelope = Envelope.new(query.message, source="app:fault",
                                              subject=card.contract, reply_to="apps.replies.v1")
                city.queries.add(query.envelope.correlation_id)
                city.events.append(query)
        return city

    def start_events(self) -> list[Event]:
        """Every card, and a top-up that pays for everything the run can ask of it."""
        out = []
        for card in self.cards:
            out.append(Event(card, card.contract))
            out.append(Event(TopUpReceived(payment_id=f"{self.run}-start-{card.contract}",
                                           contract=card.contract, amount=START_BALANCE,
                                           channel="bank_card",
                                           paid_at=datetime.now(UTC)), card.contract))
        return out

    async def seed(self, w: World, timeout: float = 180) -> None:
        async with Integrator(w.bootstrap, source="integrator:fault") as integrator:
            for event in self.start_events():
                await event.publish(integrator)
        starts = {f"{self.run}-start-{c.contract}" for c in self.cards}
        wallet = w.database("wallet")

        def credited() -> bool:
            return {e["operation_id"] for e in wallet.wallet_ledger.find(
                {"operation_kind": "top_up", "account": {"$ne": "external:topup"}},
                {"operation_id": 1})} >= starts

        await eventually(lambda: asyncio.to_thread(credited), timeout=timeout, interval=0.5,
                         what="every card topped up")

    @staticmethod
    def _unpublished(w: World) -> int:
        return sum(w.database(s)[f"{s}_outbox"].count_documents({"status": "pending"})
                   for s in SERVICES)

    def count(self, w: World, records: dict[str, list[Record]]) -> dict[str, Any]:
        ids: dict[str, set[str]] = defaultdict(set)  # business id -> distinct outcome ids
        approved: dict[str, bool] = {}

        def seen(key: str, record: Record) -> None:
            ids[key].add(record.headers.get("ce_id", ""))

        for r in records["wallet.sale-decisions.v1"]:
            sale_id = r.json().get("sale_id")
            if sale_id in self.sales:
                seen(f"sale:{sale_id}", r)
                approved[sale_id] = r.json()["approved"]
        for r in records["access.gate-decisions.v1"]:
            if r.json().get("tap_id") in self.gate_taps:
                seen(f"gate:{r.json()['tap_id']}", r)
        fares: dict[str, tuple[str, int]] = {}
        refunds: dict[str, tuple[str, int]] = {}
        for r in records["transit.events.v1"]:
            body = r.json()
            if r.type.endswith(".RideRecorded") and body.get("ride_id") in self.validator_taps:
                seen(f"ride:{body['ride_id']}", r)
            elif r.type.endswith(".FareAssessed"):
                fares[body["ride_id"]] = (body["contract"], body["amount"])
            elif r.type.endswith(".FareCorrected"):
                refunds[body["correction_id"]] = (body["contract"], body["refund"])
        answered = {r.headers.get("ce_correlationid") for r in records["apps.replies.v1"]}
        failures = Counter(r.headers.get(DLQ_CODE) for s in SERVICES
                           for r in records[dead_letter_topic(s)])

        wallet = w.database("wallet")
        credits = Counter(e["operation_id"] for e in wallet.wallet_ledger.find(
            {"operation_kind": "top_up", "account": {"$ne": "external:topup"}},
            {"operation_id": 1}))
        expected: dict[str, int] = defaultdict(lambda: START_BALANCE)
        for contract, amount in self.top_ups.values():
            expected[contract] += amount
        for contract, price in self.sales.values():
            if contract is not None:
                expected[contract] -= price
        for contract, amount in fares.values():
            expected[contract] -= amount
        for contract, amount in refunds.values():
            expected[contract] += amount
        contracts = [c.contract for c in self.cards]
        money = {d["_id"]: sum(v for sub, v in d["balances_by_sub"].items() if sub != "bonus")
                 for d in wallet.wallet_accounts.find({"_id": {"$in": contracts}})}

        outcomes = [*(f"sale:{s}" for s in self.sales), *(f"gate:{t}" for t in self.gate_taps),
                    *(f"ride:{t}" for t in self.validator_taps)]
        lost = (sum(1 for key in outcomes if not ids.get(key))
                + sum(1 for p in self.top_ups if credits[p] == 0))
        double = (sum(len(ids[key]) - 1 for key in outcomes if len(ids.get(key, ())) > 1)
                  + sum(n - 1 for n in credits.values() if n > 1))
        wrong = sum(1 for s, (contract, _) in self.sales.items()
                    if s in approved and approved[s] != (contract is not None))
        return {
            "events": len(self.events), "lost": lost, "double_applied": double,
            "balance_mismatches": sum(1 for c in contracts if money.get(c) != expected[c]),
            "wrong_decisions": wrong,
            "queries_unanswered": len(self.queries - answered),
            "processing_failed": failures.get("processing_failed", 0),
            "dead_letters": sum(failures.values()),
            "unpublished": self._unpublished(w),
            "parked": sum(w.database(s)[f"{s}_outbox"].count_documents({"status": "parked"})
                          for s in SERVICES),
        }


class Watch:
    """Readers on every output topic of the city, open for the whole scenario."""

    def __init__(self, city: City, w: World) -> None:
        self.city = city
        self.w = w
        self.readers = {topic: TopicReader(w.bootstrap, topic) for topic in OUTPUTS}

    async def __aenter__(self) -> Watch:
        for reader in self.readers.values():
            await reader.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for reader in self.readers.values():
            await reader.__aexit__()

    async def complete(self) -> bool:
        """Every event has its outcome and nothing waits in an outbox."""
        city = self.city
        for reader in self.readers.values():
            await reader.poll()
        sales = {r.json().get("sale_id") for r in self.readers["wallet.sale-decisions.v1"].records}
        gates = {r.json().get("tap_id") for r in self.readers["access.gate-decisions.v1"].records}
        rides = {r.json().get("ride_id") for r in self.readers["transit.events.v1"].records
                 if r.type.endswith(".RideRecorded")}
        answered = {r.headers.get("ce_correlationid")
                    for r in self.readers["apps.replies.v1"].records}
        if not (sales >= set(city.sales) and gates >= city.gate_taps
                and rides >= set(city.validator_taps) and answered >= city.queries):
            return False
        wallet = self.w.database("wallet")

        def settled() -> bool:
            credited = {e["operation_id"] for e in wallet.wallet_ledger.find(
                {"operation_kind": "top_up", "account": {"$ne": "external:topup"}},
                {"operation_id": 1})}
            return credited >= set(city.top_ups) and city._unpublished(self.w) == 0

        return await asyncio.to_thread(settled)

    async def result(self) -> dict[str, Any]:
        records = {topic: await reader.read_to_end(timeout=120)
                   for topic, reader in self.readers.items()}
        return await asyncio.to_thread(self.city.count, self.w, records)


def assert_clean(result: dict[str, Any]) -> None:
    """What every scenario must end with."""
    assert (result["lost"], result["double_applied"], result["balance_mismatches"]) == (0, 0, 0)
    assert (result["wrong_decisions"], result["queries_unanswered"]) == (0, 0)
    assert (result["processing_failed"], result["unpublished"], result["parked"]) == (0, 0, 0)
