"""The city's mixed load (``tests/faults/load.py``) under the faults a deployment lives with:
rolling restarts (SIGTERM) of every service, an injector that redelivers and reorders
inputs, a database outage and a frozen broker, and a replay of every consumer group from the
beginning. Each scenario prints its fault-result line against the reference model."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import signal
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from deploy.local import stack as devstack
from services.runtime.broker import group_lag
from services.runtime.kafka_security import KafkaConnection
from tests.faults.conftest import Report, World, scale
from tests.faults.load import City, Event, Watch, assert_clean
from tests.faults.test_kill import fast_takeover, publish_paced, start_all
from tests.support import Integrator, eventually

pytestmark = [pytest.mark.system, pytest.mark.slow]

SERVICES = devstack.SERVICES


def redeliveries(w: World) -> int:
    """Messages the services saw again and ignored (their inbox had them): from every log."""
    return sum(path.read_text(errors="replace").count('"duplicate ignored"')
               for path in (w.run_dir / "logs").glob("*.log"))


async def prepare(w: World, events: int, seed: int) -> tuple[City, dict[str, devstack.Proc]]:
    w.start_sinks()
    procs = await start_all(w, fast_takeover(), "0")
    city = City.build(random.Random(seed), events, private_key=w.env["AUTH_PRIVATE_KEY"])
    await city.seed(w)
    return city, procs


async def settle(watch: Watch, events: int) -> float:
    started = time.monotonic()
    await eventually(watch.complete, timeout=300 + events / 20, interval=1,
                     what="every event's outcome")
    return round(time.monotonic() - started, 1)


@pytest.mark.parametrize("events, rounds", [
    (400, 2), pytest.param(6_000, 20, marks=pytest.mark.timeout(3_600))])
async def test_rolling_restarts_of_every_service_under_load_lose_and_double_nothing(
        events: int, rounds: int, world: World, fault_report: Report) -> None:
    """Each round starts a new instance of every service, waits for it, then SIGTERMs the old
    one (a rolling update with surge): the old instance stops consuming, finishes or leaves
    uncommitted the message in hand, flushes its outbox and exits."""
    w = world
    events = scale(events) if rounds > 2 else events
    city, procs = await prepare(w, events, seed=events + rounds)
    env = fast_takeover()
    async with Watch(city, w) as watch:
        per_s = 40.0
        publisher = asyncio.create_task(publish_paced(city, w, per_s))
        pause = max(1.0, len(city.events) / per_s / rounds)
        slow_stops = 0
        for n in range(rounds):
            await asyncio.sleep(pause)
            fresh = {s: w.start(s, f"r{n}", wait=False, env=env[s]) for s in SERVICES}
            for proc in fresh.values():
                await asyncio.to_thread(devstack.wait_ready, proc, 120)
            stopped = time.monotonic()
            await asyncio.gather(*(asyncio.to_thread(p.stop, 60.0, signal.SIGTERM)
                                   for p in procs.values()))
            slow_stops += time.monotonic() - stopped > 30
            procs = fresh
        await publisher
        drain_s = await settle(watch, events)
        result: dict[str, Any] = await watch.result()
    fault_report(f"rolling SIGTERM x{rounds} of every service", **result,
                 restarts=rounds * len(SERVICES), redeliveries=redeliveries(w),
                 stops_over_30_s=slow_stops, drain_s=drain_s)
    assert_clean(result)


@pytest.mark.parametrize("events", [400, pytest.param(10_000, marks=pytest.mark.timeout(3_600))])
async def test_redelivered_and_reordered_inputs_end_in_the_models_state(
        events: int, world: World, fault_report: Report) -> None:
    """30 % of the inputs are delivered twice and 5 % three times (the very same record), and
    the whole stream is shuffled across topics and cards: validator taps arrive late (fares are
    corrected), gate taps out of order, queries before the money they read."""
    w = world
    events = scale(events) if events > 400 else events
    city, _ = await prepare(w, events, seed=events + 7)
    rng = random.Random(events)
    deliveries: list[Event] = []
    for event in city.events:
        copies = 3 if rng.random() < 0.05 else 2 if rng.random() < 0.3 / 0.95 else 1
        deliveries.extend([event] * copies)
    rng.shuffle(deliveries)
    async with Watch(city, w) as watch:
        async with Integrator(w.bootstrap, source="integrator:fault") as integrator:
            for event in deliveries:
                await event.publish(integrator)  # a copy keeps the first copy's envelope
        drain_s = await settle(watch, events)
        result: dict[str, Any] = await watch.result()
    fault_report("duplicates 30%x2 + 5%x3, shuffled", **result,
                 deliveries=len(deliveries), redeliveries=redeliveries(w), drain_s=drain_s)
    assert_clean(result)


@pytest.mark.parametrize("events", [600, pytest.param(6_000, marks=pytest.mark.timeout(3_600))])
async def test_a_database_outage_and_a_frozen_broker_under_load_lose_nothing(
        events: int, world: World, fault_report: Report) -> None:
    """The database is killed for 10 s, later the broker is frozen (SIGSTOP) for 10 s, while
    the load keeps coming: the services stay up, retry and catch up."""
    w = world
    events = scale(events) if events > 600 else events
    city, procs = await prepare(w, events, seed=events + 11)
    per_s = 40.0
    async with Watch(city, w) as watch:
        publisher = asyncio.create_task(publish_paced(city, w, per_s))
        third = len(city.events) / per_s / 3
        await asyncio.sleep(third)
        await asyncio.to_thread(w.mongo.stop, 5.0, signal.SIGKILL)
        await asyncio.sleep(10)
        await asyncio.to_thread(w.restart_mongo)
        db_back = time.monotonic()
        await asyncio.sleep(third)
        w.kafka_freeze()
        await asyncio.sleep(10)
        w.kafka_thaw()
        broker_back = time.monotonic()
        await publisher
        await eventually(watch.complete, timeout=300 + events / 20, interval=1,
                         what="every event's outcome after the outages")
        result: dict[str, Any] = await watch.result()
    alive = sum(1 for p in procs.values() if p.alive())
    fault_report("database down 10 s + broker frozen 10 s", **result,
                 recovery_after_db_s=round(time.monotonic() - db_back, 1),
                 recovery_after_broker_s=round(time.monotonic() - broker_back, 1),
                 services_alive=alive)
    assert_clean(result)
    assert alive == len(SERVICES)


STATE_SKIP = ("_inbox", "_outbox")
VOLATILE = {"stored_at", "published_at", "lease_until", "lease_owner", "at"}


def state_hash(w: World, service: str) -> dict[str, tuple[str, int]]:
    """Per collection of the service (not its inbox or outbox), a hash of every document
    without wall-clock bookkeeping fields, in a stable order, and the document count."""
    db = w.database(service)
    hashes = {}
    for name in sorted(db.list_collection_names()):
        if name.endswith(STATE_SKIP):
            continue
        digest = hashlib.sha256()
        docs = sorted(db[name].find(), key=lambda d: str(d["_id"]))
        for doc in docs:
            clean = {k: v for k, v in doc.items() if k not in VOLATILE}
            digest.update(json.dumps(clean, sort_keys=True, default=str).encode())
        hashes[name] = (digest.hexdigest(), len(docs))
    return hashes


def subscribed(w: World, service: str) -> list[str]:
    """The topics the service's consumer group reads, as its first instance logged them."""
    for line in (w.run_dir / "logs" / f"{service}-0.log").read_text().splitlines():
        if '"service started"' in line:
            return list(json.loads(line)["topics"])
    raise AssertionError(f"{service} never logged its start")


async def rewind(bootstrap: str, service: str, topics: list[str]) -> int:
    """Join the service's group alone (the service is stopped) and commit the beginning of
    every partition of ``topics``; return how many records it will read again. (The
    development broker refuses commits from outside the group, so the rewind joins it.)"""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap,
                                group_id=f"schoolcard-{service}", enable_auto_commit=False)
    await consumer.start()
    try:
        async def assigned() -> set[TopicPartition]:
            await consumer.getmany(timeout_ms=200, max_records=1)
            return set(consumer.assignment())

        tps = await eventually(assigned, timeout=120, interval=0.5,
                               what=f"the {service} group joined")
        starts = await consumer.beginning_offsets(list(tps))
        ends = await consumer.end_offsets(list(tps))
        await consumer.commit({tp: OffsetAndMetadata(starts[tp], "") for tp in tps})
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()


@pytest.mark.parametrize("events", [400, pytest.param(4_000, marks=pytest.mark.timeout(3_600))])
async def test_replaying_every_consumer_group_from_the_beginning_changes_no_state(
        events: int, world: World, fault_report: Report) -> None:
    w = world
    events = scale(events) if events > 400 else events
    city, procs = await prepare(w, events, seed=events + 13)
    async with Watch(city, w) as watch:
        async with Integrator(w.bootstrap, source="integrator:fault") as integrator:
            for event in city.events:
                await event.publish(integrator)
        await settle(watch, events)
        before = {s: await asyncio.to_thread(state_hash, w, s) for s in SERVICES}
        await asyncio.gather(*(asyncio.to_thread(p.stop, 60.0, signal.SIGTERM)
                               for p in procs.values()))
        topics = {s: subscribed(w, s) for s in SERVICES}
        replayed = {s: await rewind(w.bootstrap, s, topics[s]) for s in SERVICES}
        started = time.monotonic()
        procs = await start_all(w, fast_takeover(), "replay")

        async def caught_up() -> bool:
            lags = [await group_lag(KafkaConnection(w.bootstrap), f"schoolcard-{s}", *topics[s])
                    for s in SERVICES]
            return sum(lags) == 0

        await eventually(caught_up, timeout=300 + events / 10, interval=1,
                         what="every group read its topics again")
        await settle(watch, events)
        replay_s = round(time.monotonic() - started, 1)
        after = {s: await asyncio.to_thread(state_hash, w, s) for s in SERVICES}
        result: dict[str, Any] = await watch.result()
    changed = sorted(f"{s}.{name}" for s in SERVICES for name in {*before[s], *after[s]}
                     if before[s].get(name) != after[s].get(name))
    fault_report("replay of every group from the beginning", **result,
                 records_replayed=sum(replayed.values()), collections_changed=len(changed),
                 documents=sum(n for h in after.values() for _, n in h.values()),
                 replay_s=replay_s)
    assert_clean(result)
    assert changed == [], f"state changed by a replay: {changed}"
