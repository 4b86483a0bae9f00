"""Fault injection (``make faults``): kill -9 repeatedly under load, a database outage, and a
SIGTERM while a message cannot finish. Each test runs its own broker and database, because it
kills them. Money invariants are checked after every scenario: balance == ledger sum, every
payment applied exactly once, nothing lost."""

from __future__ import annotations

import asyncio
import random
import signal
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import MongoClient

from contracts.integrations import CardIssued, TopUpReceived
from deploy.local import stack as devstack
from tests.support import Integrator, chip_uid, eventually, uid

pytestmark = [pytest.mark.slow, pytest.mark.system]


class World:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.kafka = devstack.start_broker(run_dir)
        self.mongo = devstack.start_mongo(run_dir)
        self.env = devstack.infra_env(self.kafka.port, self.mongo.port, run_dir)
        self.db = MongoClient(self.env["SCHOOLCARD_MONGO_URI"], tz_aware=True,
                              serverSelectionTimeoutMS=2000).schoolcard_wallet
        self.services: list[devstack.Proc] = []

    @property
    def bootstrap(self) -> str:
        return self.env["SCHOOLCARD_KAFKA_BOOTSTRAP"]

    def wallet(self, name: str, wait: bool = True) -> devstack.Proc:
        proc = devstack.start_service("wallet", self.run_dir, self.env, instance=name)
        self.services.append(proc)
        if wait:
            devstack.wait_ready(proc, timeout=90)
        return proc

    def restart_mongo(self) -> None:
        self.mongo = devstack.start_mongo(self.run_dir, self.mongo.port)

    def close(self) -> None:
        for p in self.services:
            p.stop(timeout=5)
        self.mongo.stop()
        self.kafka.stop()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    base = devstack.ROOT / ".run" / "faults"
    base.mkdir(parents=True, exist_ok=True)
    w = World(Path(tempfile.mkdtemp(dir=base)))
    try:
        yield w
    finally:
        w.close()


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


def assert_money_invariants(w: World, top_ups: list[TopUpReceived]) -> None:
    expected: dict[str, int] = defaultdict(int)
    for t in top_ups:
        expected[t.contract] += t.amount
    for doc in w.db.wallet_accounts.find():
        entries = list(w.db.wallet_ledger.find({"account": doc["_id"]}))
        assert sum(e["amount"] for e in entries) == expected[doc["_id"]]
        assert sum(doc["balances_by_sub"].values()) == expected[doc["_id"]]
    credits = w.db.wallet_ledger.find({"operation_kind": "top_up",
                                       "account": {"$ne": "external:topup"}})
    ops = [e["operation_id"] for e in credits]
    assert sorted(ops) == sorted(t.payment_id for t in top_ups)  # each exactly once


async def test_three_kill_minus_nine_crashes_under_load_lose_nothing_and_double_nothing(world):
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
        proc = w.wallet(f"after-kill-{n}")
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=180, what="every payment applied")
    assert_money_invariants(w, top_ups)


async def test_a_database_outage_pauses_consumption_without_dead_letters_and_recovers(world):
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
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=180, what="every payment applied after the outage")
    assert_money_invariants(w, top_ups)
    consumer = AIOKafkaConsumer(bootstrap_servers=w.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic("wallet.dead-letter.v1") or set()
        ends = await consumer.end_offsets([TopicPartition("wallet.dead-letter.v1", p)
                                           for p in parts]) if parts else {}
        assert sum(ends.values()) == 0, "an outage must never dead-letter money"
    finally:
        await consumer.stop()


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


async def test_sigterm_while_a_message_cannot_finish_leaves_its_offset_uncommitted(world):
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
    assert after == before
    w.restart_mongo()
    w.wallet("b")
    await eventually(lambda: asyncio.to_thread(lambda: applied(w) == len(top_ups)),
                     timeout=120, what="every payment applied after restart")
    assert_money_invariants(w, top_ups)
