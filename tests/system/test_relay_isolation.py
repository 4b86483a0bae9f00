"""One message must not stop a service: requests naming reply topics that cannot exist, and
outbox records the broker can never take, leave wallet and access (each its own process, on the
real broker and database) deciding every canteen sale and every gate tap behind them.

The poison comes two ways: as requests anyone who can write to a commands topic could send
(refused before any handler runs, dead-lettered ``reply_topic_not_allowed``), and as records
already in the outboxes, older than everything else (a name Kafka refuses, a payload over the
broker's limit), as a handler bug or an older version could have left them: the relay parks
them and publishes what is behind."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from contracts.access import GetClassRegister
from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import Envelope
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
)
from contracts.wallet import GetBalance
from tests.support import Integrator, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.system

SCHOOL = "izh-relay-1"
BAD_REPLY_TOPICS = ["no such topic!", "x" * 300, "apps.replies.nobody-listens.v1",
                    "wallet.sale-decisions.v1"]


def poison_records(service: str) -> list[dict[str, Any]]:
    """Outbox records of a dead instance, older than anything else: taken over first."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    base = {"owner": "gone-instance", "status": "pending", "created_at": long_ago,
            "attempts": 0, "headers": {"ce_type": "schoolcard.test.Poison"}}
    return [
        {**base, "_id": uuid.uuid4().hex, "message_id": uid("m"), "seq": 1, "key": "k-bad",
         "topic": "no such topic!", "type": "schoolcard.test.Poison", "payload": "{}"},
        {**base, "_id": uuid.uuid4().hex, "message_id": uid("m"), "seq": 2, "key": "k-big",
         "topic": f"{service}.events.v1", "type": "schoolcard.test.Poison",
         "payload": '"' + "x" * 1_500_000 + '"'},
    ]


async def test_poison_replies_and_unpublishable_records_stop_no_gate_or_till_decision(
        start_service: Any, bootstrap: str, mongo: Any) -> None:
    outboxes = {"wallet": mongo.schoolcard_wallet.wallet_outbox,
                "access": mongo.schoolcard_access.access_outbox}
    injected = {service: poison_records(service) for service in outboxes}
    for service, docs in injected.items():
        outboxes[service].insert_many(docs)
    start_service("wallet")
    start_service("access")
    now = datetime.now(UTC)
    cards = [CardIssued(contract=f"{random.randrange(10**7, 10**8)}", card_uid=chip_uid(),
                        school_id=SCHOOL, school_tz="Europe/Samara", student_id=uid("stu"),
                        class_name="6А", birth_date=date(2014, 2, 2),
                        issued_at=now) for _ in range(10)]
    run = uid("relay")
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as sale_decisions, \
            TopicReader(bootstrap, "access.gate-decisions.v1") as gate_decisions, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as wallet_dlq, \
            TopicReader(bootstrap, "access.dead-letter.v1") as access_dlq:
        for card in cards:
            await integrator.publish(card, card.contract)
            await integrator.publish(TopUpReceived(
                payment_id=f"{run}-{card.contract}", contract=card.contract, amount=1_000_00,
                channel="terminal", paid_at=now), card.contract)
        # A sale decided before its card's money arrived would be declined, rightly: the tills
        # below must find the money there, whichever topic wallet happens to read first.
        ledger = mongo.schoolcard_wallet.wallet_ledger
        payments = [f"{run}-{card.contract}" for card in cards]
        await eventually(lambda: asyncio.to_thread(
            lambda: ledger.count_documents({"operation_id": {"$in": payments},
                                   "account": {"$in": [c.contract for c in cards]}})
            == len(cards)),
            timeout=60, what="the top-ups applied")
        correlation = uid("poison")
        register = GetClassRegister(school_id=SCHOOL, class_name="6А",
                                    local_date=date.today().isoformat())
        balance = GetBalance(contract=cards[0].contract)
        for reply_to in BAD_REPLY_TOPICS:  # no token either: an error reply would follow
            for query, key in ((balance, cards[0].contract), (register, SCHOOL)):
                envelope = Envelope.new(query, source="app:x", subject=key,
                                        reply_to=reply_to).model_copy(
                    update={"correlation_id": correlation})
                await integrator.publish(query, key, envelope=envelope)
        sales = [CanteenSaleRequested(
            sale_id=f"{run}-s{i}", terminal_id="relay-till-1", school_id=SCHOOL,
            card_uid=cards[i % len(cards)].card_uid, sold_at=datetime.now(UTC),
            items=[SaleItem(sku="meal", name="Обед", category="hot_meal", qty=1,
                            unit_price=85_00)]) for i in range(20)]
        taps = [GateTapped(tap_id=f"{run}-t{i}", gate_id="relay-gate-1", school_id=SCHOOL,
                           card_uid=cards[i % len(cards)].card_uid, direction="in",
                           tapped_at=datetime.now(UTC)) for i in range(20)]
        for sale, tap in zip(sales, taps, strict=True):
            await integrator.publish(sale, sale.card_uid)
            await integrator.publish(tap, tap.gate_id)

        sale_ids = {s.sale_id for s in sales}
        tap_ids = {t.tap_id for t in taps}
        decided = await sale_decisions.wait_for(
            lambda r: r.json().get("sale_id") in sale_ids, count=len(sales), timeout=90)
        passed = await gate_decisions.wait_for(
            lambda r: r.json().get("tap_id") in tap_ids, count=len(taps), timeout=90)
        assert {r.json()["sale_id"] for r in decided} == sale_ids
        declined = [r.json() for r in decided if not r.json()["approved"]]
        assert not declined
        assert {r.json()["tap_id"] for r in passed} == tap_ids

        for dlq in (wallet_dlq, access_dlq):
            refused = await dlq.wait_for(
                lambda r: r.headers.get("ce_correlationid") == correlation,
                count=len(BAD_REPLY_TOPICS))
            assert {r.headers[DLQ_CODE] for r in refused} == {"reply_topic_not_allowed"}
            assert any("does not exist" in r.headers[DLQ_REASON] for r in refused)

    def parked() -> dict[str, str] | None:
        reasons = {doc["_id"]: doc.get("park_reason")
                   for outbox in outboxes.values()
                   for doc in outbox.find({"owner": "gone-instance"})}
        return reasons if all(reasons.values()) else None

    reasons = await eventually(lambda: asyncio.to_thread(parked), timeout=30,
                               what="the poison records parked")
    by_topic = {doc["_id"]: doc["topic"] for docs in injected.values() for doc in docs}
    assert {(by_topic[i][:14], r) for i, r in reasons.items()} == {
        ("no such topic!", "invalid_topic"), ("wallet.events.", "too_large"),
        ("access.events.", "too_large")}
    # nothing of the refused requests reached any outbox: no reply waits to be published
    for outbox in outboxes.values():
        assert outbox.count_documents({"key": correlation}) == 0
