"""Fault injection (``make faults``): kill -9 repeatedly under load, a database outage, and a
SIGTERM while a message cannot finish. Each test runs its own broker and database, because it
kills them. Money invariants are checked after every scenario: balance == ledger sum, every
payment applied exactly once, nothing lost."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.integrations import CardIssued, TopUpReceived
from tests.faults.conftest import Report, World
from tests.support import Integrator, chip_uid, eventually, uid

pytestmark = [pytest.mark.slow, pytest.mark.system]


async def seed(w: World, accounts: int, payments: int) -> tuple[list[str], list[TopUpReceived]]:
    rng = random.Random(accounts * 7919 + payments)
    now = datetime.now(UTC)
    contracts = [f"{rng.randrange(10**7, 10**8)}" for _ in range(accounts)]
    async with Integrator(w.bootstrap) as integrator:
        for c in contracts:
            await integrator.publish(CardIssued(
                contract=c, card_uid=chip_uid(rng), school_id="izh-1",
                school_tz="Europe/Samara", student_id=uid("s"), class_name="2Б",
                birth_date=date(2017, 2, 2), issued_at=now), c)
    await eventually(lambda: asyncio.to_thread(
        lambda: w.db.wallet_accounts.count_documents({}) == accounts), timeout=90,
        what="accounts opened")
    run = uid("f")
    top_ups = [TopUpReceived(payment_id=f"{run}-{i}", contract=rng.choice(contracts),
                             amount=rng.randrange(1, 100) * 100, channel="atm", paid_at=now)
               for i in range(payments)]
    return contracts, top_ups


def applied(w: World) -> int:
    return w.db.wallet_ledger.count_documents({"operation_kind": "top_up",
                                               "account": {"$ne": "external:topup"}})


def money_figures(w: World, top_ups: list[TopUpReceived]) -> dict[str, Any]:
    """Against the reference model (each payment credited once to its contract): payments
    never credited (lost), credited more than once (double_applied), and accounts whose
    balance or ledger sum differs from the model."""
    expected: dict[str, int] = defaultdict(int)
    for t in top_ups:
        expected[t.contract] += t.amount
    mismatches = 0
    for doc in w.db.wallet_accounts.find():
        entries = list(w.db.wallet_ledger.find({"account": doc["_id"]}))
        mismatches += (sum(e["amount"] for e in entries) != expected[doc["_id"]]
                       or sum(doc["balances_by_sub"].values()) != expected[doc["_id"]])
    credits = Counter(e["operation_id"] for e in w.db.wallet_ledger.find(
        {"operation_kind": "top_up", "account": {"$ne": "external:topup"}}))
    return {"events": len(top_ups),
            "lost": sum(1 for t in top_ups if credits[t.payment_id] == 0),
            "double_applied": sum(n - 1 for n in credits.values() if n > 1),
            "balance_mismatches": mismatches}


def report_money(report: Report, scenario: str, w: World, top_ups: list[TopUpReceived],
                 **figures: Any) -> None:
    result = report(scenario, **money_figures(w, top_ups), **figures)
    assert (result["lost"], result["double_applied"], result["balance_mismatches"]) == (0, 0, 0)


async def test_three_kill_minus_nine_crashes_under_load_lose_nothing_and_double_nothing(
        world: World, fault_report: Report) -> None:
    w = world
    proc = w.wallet("a")
    _, top_ups = await seed(w, 30, 900)
    async with Integrator(w.bootstrap) as integrator:
        for t in top_ups:
            await integrator.publish(t, t.contract)
    for n, at_least in enumerate((150, 400, 650)):
        await eventually(lambda at_least=at_least: asyncio.to_thread(
            lambda: applied(w) >= at_least), timeout=120, what=f"{at_least} applied")
        proc.stop(sig=signal.SIGKILL)
        killed_at = time.monotonic()
        proc = w.wallet(f"after-kill-{n}")
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=180, what="every payment applied")
    report_money(fault_report, "kill -9 wallet x3", w, top_ups, kills=3,
                 drain_after_last_kill_s=round(time.monotonic() - killed_at, 1))


async def test_a_database_outage_pauses_consumption_without_dead_letters_and_recovers(
        world: World, fault_report: Report) -> None:
    w = world
    w.wallet("a")
    _, top_ups = await seed(w, 10, 300)
    async with Integrator(w.bootstrap) as integrator:
        for t in top_ups[:100]:
            await integrator.publish(t, t.contract)
        await eventually(lambda: asyncio.to_thread(lambda: applied(w) >= 50), timeout=60,
                         what="some applied")
        w.mongo.stop(sig=signal.SIGKILL)
        for t in top_ups[100:]:
            await integrator.publish(t, t.contract)
        await asyncio.sleep(0)  # the outage lasts while the rest is published
        w.restart_mongo()
        back_at = time.monotonic()
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=180, what="every payment applied after the outage")
    recovered_s = round(time.monotonic() - back_at, 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=w.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic("wallet.dead-letter.v1") or set()
        ends = await consumer.end_offsets([TopicPartition("wallet.dead-letter.v1", p)
                                           for p in parts]) if parts else {}
    finally:
        await consumer.stop()
    report_money(fault_report, "database killed and restarted", w, top_ups,
                 dead_lettered=sum(ends.values()), recovery_s=recovered_s)
    assert sum(ends.values()) == 0, "an outage must never dead-letter money"


async def committed_offsets(bootstrap: str) -> dict[int, int | None]:
    """The group's committed offsets on the top-up topic, read without joining the group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="schoolcard-wallet",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic("integrations.topups.v1") or set()
        return {p: await consumer.committed(TopicPartition("integrations.topups.v1", p))
                for p in sorted(parts)}
    finally:
        await consumer.stop()


async def test_sigterm_while_a_message_cannot_finish_leaves_its_offset_uncommitted(
        world: World, fault_report: Report) -> None:
    """FastStream #2999/#3000: an interrupted handler must not move the committed offset."""
    w = world
    w.wallet("a")
    _, top_ups = await seed(w, 5, 40)
    async with Integrator(w.bootstrap) as integrator:
        w.mongo.stop(sig=signal.SIGKILL)  # every handler now waits on the database
        for t in top_ups:
            await integrator.publish(t, t.contract)
        before = await committed_offsets(w.bootstrap)
        w.services[0].stop(sig=signal.SIGTERM, timeout=60)
        after = await committed_offsets(w.bootstrap)
    w.restart_mongo()
    w.wallet("b")
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=120, what="every payment applied after restart")
    moved = sum(1 for p in before if after.get(p) != before[p])
    report_money(fault_report, "SIGTERM with a handler stuck", w, top_ups,
                 offsets_moved_past_interrupted=moved)
    assert after == before
