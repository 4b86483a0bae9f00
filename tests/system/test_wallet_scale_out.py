"""Two wallet processes in one consumer group share a stream of mixed events (card issuance,
top-ups, canteen sales, fares, redeliveries and re-sent business ids): afterwards every
account's balance equals its ledger, every posting balances, nothing was applied twice and
nothing was lost. 1,000 events in `make test`, 5,000 under `-m slow`."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

import pytest

from contracts.integrations import CanteenSaleRequested, CardIssued, SaleItem, TopUpReceived
from contracts.transit import FareAssessed
from services.wallet import domain as d
from tests.support import Integrator, chip_uid, eventually, uid

pytestmark = pytest.mark.system

log = logging.getLogger("tests.wallet.scale_out")


@pytest.mark.parametrize("total", [
    1_000, pytest.param(5_000, marks=[pytest.mark.slow, pytest.mark.timeout(1_500)])])
async def test_two_wallet_processes_in_one_group_apply_mixed_events_exactly_once(
        total: int, start_service: Any, bootstrap: str, mongo: Any,
        record_property: Any) -> None:
    rng = random.Random(total)
    run = uid("run")
    now = datetime.now(UTC)
    cards = [CardIssued(contract=f"{rng.randrange(10**7, 10**8)}",
                        card_uid=chip_uid(rng), school_id="izh-scale",
                        school_tz="Europe/Samara", student_id=uid("stu"), class_name="7В",
                        birth_date=date(2013, 4, 1), issued_at=now) for _ in range(20)]
    by_contract = {c.contract: c for c in cards}
    messages: list[tuple[Any, str]] = [(c, c.contract) for c in cards]
    top_ups: set[str] = set()
    sales: set[str] = set()
    rides: set[str] = set()
    while len(messages) < total:
        contract = rng.choice(cards).contract
        n = len(messages)
        roll = rng.random()
        if roll < 0.4:
            message: Any = TopUpReceived(
                payment_id=f"{run}-p{n}", contract=contract, amount=rng.randrange(1, 300) * 100,
                sub_balance=rng.choice(["general", "canteen", "transit"]), channel="terminal",
                paid_at=now)
            top_ups.add(message.payment_id)
            key = contract
        elif roll < 0.75:
            message = CanteenSaleRequested(
                sale_id=f"{run}-s{n}", terminal_id="till-scale", school_id="izh-scale",
                card_uid=by_contract[contract].card_uid, sold_at=now,
                items=[SaleItem(sku="meal", name="Обед", category="hot_meal", qty=1,
                                unit_price=rng.randrange(20, 120) * 100)])
            sales.add(message.sale_id)
            key = message.card_uid
        else:
            message = FareAssessed(ride_id=f"{run}-r{n}", contract=contract,
                                   card_uid=by_contract[contract].card_uid,
                                   amount=rng.choice([30_00, 35_00]), tapped_at=now)
            rides.add(message.ride_id)
            key = contract
        messages.append((message, key))
    # A takeover age longer than the run: both instances stay alive, and a backlog older than
    # the default 30 s would otherwise be published by both (harmless duplicates, noisy figures).
    env = {"WALLET_OUTBOX_TAKEOVER_S": "1000000000"}
    wallet_a = start_service("wallet", instance="scale-a", env=env)
    wallet_b = start_service("wallet", instance="scale-b", env=env)
    accounts = mongo.schoolcard_wallet.wallet_accounts
    ledger = mongo.schoolcard_wallet.wallet_ledger
    operations = mongo.schoolcard_wallet.wallet_operations
    contracts = list(by_contract)
    started = time.monotonic()
    async with Integrator(bootstrap) as integrator:
        for card in cards:
            await integrator.publish(card, card.contract)
        await eventually(lambda: asyncio.to_thread(
            lambda: accounts.count_documents({"_id": {"$in": contracts}}) == len(contracts)),
            timeout=60, what="accounts opened")
        sent: list[tuple[Any, str, Any]] = []
        for message, key in messages[len(cards):]:
            envelope = await integrator.publish(message, key)
            sent.append((message, key, envelope))
            if rng.random() < 0.1:  # the integrator's client re-sent the same record
                await integrator.publish(message, key, envelope=envelope)
            elif rng.random() < 0.1:  # the integrator retried the business id as a new message
                await integrator.publish(message, key)

        def progress() -> tuple[int, int, int]:
            rows = list(operations.find({"contract": {"$in": contracts}}, {"kind": 1, "key": 1}))
            return (sum(1 for x in rows if x["kind"] == "top_ups" and x["key"] in top_ups),
                    sum(1 for x in rows if x["kind"] == "sales" and x["key"] in sales),
                    sum(1 for x in rows if x["kind"] == "rides" and x["key"] in rides))

        expected = (len(top_ups), len(sales), len(rides))
        await eventually(lambda: asyncio.to_thread(lambda: progress() == expected),
                         timeout=60 + total / 15, interval=1, what="every event applied")
    elapsed = time.monotonic() - started
    record_property("wallet_events_per_s", round(total / elapsed, 1))
    log.warning("two wallets applied %d events in %.1f s (%.1f events/s)", total, elapsed,
                total / elapsed)
    assert wallet_a.alive() and wallet_b.alive()

    docs = {x["_id"]: x for x in accounts.find({"_id": {"$in": contracts}})}
    all_entries: list[d.LedgerEntry] = []
    for contract, doc in docs.items():
        entries = [d.LedgerEntry.from_doc({k: v for k, v in e.items() if k != "_id"})
                   for e in ledger.find({"$or": [{"account": contract},
                                                 {"counter_account": contract}]})]
        account = d.Account.from_doc(
            {k: v for k, v in doc.items() if k != "_id"},
            [(x["kind"], x["record"]) for x in operations.find({"contract": contract})],
            complete=True)
        assert d.check_ledger(account, entries) == [], contract
        assert min(account.balances.general, account.balances.canteen,
                   account.balances.transit) >= 0
        all_entries += entries
        applied = Counter(e.operation_id for e in entries if e.account == contract)
        top_up_records = {t.payment_id: t for t in account.top_ups.values()}
        for payment_id in top_up_records:
            assert applied[payment_id] == 1, payment_id  # one wallet leg per top-up
    # Each top-up credited exactly once, across all accounts; money out == money in - left.
    credited = [e for e in all_entries if e.operation_kind is d.OperationKind.TOP_UP
                and e.account in docs]
    assert sorted(e.operation_id for e in credited) == sorted(top_ups)
    spent = -sum(e.amount for e in all_entries if e.account in docs
                 and e.operation_kind in (d.OperationKind.SALE, d.OperationKind.FARE)
                 and e.sub_balance is not d.SubBalance.BONUS)
    left = sum(d.Account.from_doc({k: v for k, v in x.items() if k != "_id"}).balances.money
               for x in docs.values())
    assert sum(e.amount for e in credited) == spent + left
