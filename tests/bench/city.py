"""The city benchmark (issue 13 §4): a mixed city workload against the five services as
processes, beside two reference pipelines over the same inputs.

``python -m tests.bench.city [--cards N] [--events M] [--guardians G] [--quick] [--out PATH]``

1. Starts a broker, the MongoDB-protocol server, the notification sinks and the five services
   (each its own process), issues ``--cards`` cards to one school (schedule open all day), tops
   every card up with enough money for the whole run, links a guardian (contacts, push token,
   no quiet hours) to ``--guardians`` of the children.
2. **Closed loop**: publishes ``--events`` integrator events as fast as the producer takes
   them — per child and day about 2 gate taps, 4 validator taps, 2 canteen sales and 0.2
   top-ups, so keys spread over the partitions — and measures events/s from the first publish
   until every input has its outcome (gate decision, sale decision, TopUpApplied,
   RideRecorded). Messages each service handled meanwhile (its Prometheus counter
   ``schoolcard_messages_handled_total``, every outcome) over the same seconds give
   ``per_service_msgs_per_s``.
3. **Open loop** at half the closed-loop rate, on fresh events: latencies p50/p95/p99 of
   ``gate_decision`` (GateTapped -> access.gate-decisions.v1), ``till_decision``
   (CanteenSaleRequested -> wallet.sale-decisions.v1), ``topup_spendable`` (TopUpReceived ->
   TopUpApplied on wallet.events.v1) and ``notification`` (any input of a child with a guardian
   -> the push reported ``sent`` on notify.deliveries.v1, i.e. after the provider (local sink)
   accepted it; matched through the notification id, which starts with the business id).
4. Per service: peak RSS (``VmHWM``) and CPU seconds (utime + stime) from /proc; the services
   are stopped after that.
5. The references of ``tests.bench.references`` (``raw``: aiokafka + batched PyMongo
   transactions; ``naive``: one FastStream handler per message, default settings), each as its
   own process on fresh topics and databases of the same broker and server, fed the very
   closed-loop inputs; after a warm-up (its group joined and serving), events/s from the first
   publish to the last output.

Prints a table with the issue's targets beside the figures (not asserted) and writes the
figures to ``--out`` (default ``.run/bench/latest.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import AsyncMongoClient

from contracts.access import DayHours, SetSchoolSchedule
from contracts.auth import GuardianContacts, GuardianLinked, Role
from contracts.catalog import topic_for
from contracts.envelope import ContractModel, Envelope, encode
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
    ValidatorTapped,
)
from contracts.notify import RegisterPushToken, SetPreferences
from contracts.signing import Signers
from deploy.local import stack as devstack
from services.notify.outbound import notification_id
from services.runtime.tokens import issue_access_token
from tests.support import Requester, chip_uid, eventually, uid

SCHOOL = "bench-city-1"
ZONE = "UTC"
NOTIFY_ZONE = ZoneInfo("Europe/Samara")  # notify's journey day (NOTIFY_SCHOOL_TIME_ZONE)
START_BALANCE = 5_000_000_00  # kopecks: every sale and fare of the run is paid
# per child and school day: 2 gate taps, 4 validator taps, 2 canteen sales, 0.2 top-ups
MIX = (("gate", 2.0), ("ride", 4.0), ("sale", 2.0), ("topup", 0.2))
OUTCOME_TOPICS = ("access.gate-decisions.v1", "wallet.sale-decisions.v1", "wallet.events.v1",
                  "transit.events.v1", "notify.deliveries.v1")
HANDLED = "schoolcard_messages_handled_total"
RUN_BASE = Path(os.environ.get("RUN_DIR", devstack.ROOT / ".run")) / "bench"
REFERENCES: list[subprocess.Popen[bytes]] = []  # reference processes started by this run
TARGETS = {
    "ours_over_raw": ">= 0.70", "ours_over_naive": ">= 10", "events_per_s": ">= 2000",
    "gate_decision_p99_ms": "<= 50 (half rate)", "topup_spendable_p99_ms": "<= 1000",
    "notification_p95_ms": "<= 1000", "peak_rss_mb": "<= 150 per service",
}
NOTES = {
    "events_per_s": "closed loop: inputs with their outcome / seconds from the first publish "
                    "to the last outcome (gate and sale decisions, TopUpApplied, RideRecorded)",
    "latency_ms": "open loop at half the closed-loop rate; from the producer's send to the "
                  "outcome read back; notification: to the push reported sent on "
                  "notify.deliveries.v1 (after the local push sink accepted it)",
    "per_service_msgs_per_s": "schoolcard_messages_handled_total (every outcome) during the "
                              "closed loop / its seconds; auth gets none of the city traffic",
    "peak_rss_mb": "VmHWM of each service process at the end of the open loop",
    "cpu_s": "utime + stime of each service process over the whole bench (seeding included); "
             "ours.cpu_s_closed_loop: during the closed loop only",
    "references": "raw and naive run after the services are stopped, each as its own process "
                  "on its own topics and database, fed the closed loop's inputs after a warm-up",
}
LATENCIES = ("gate_decision", "till_decision", "topup_spendable", "notification")
KIND_LATENCY = {"gate": "gate_decision", "sale": "till_decision", "topup": "topup_spendable"}


# --- the workload --------------------------------------------------------------------------

@dataclass
class Wire:
    """One message, encoded once, ready to send (the same bytes go to every pipeline)."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    message_id: str
    kind: str = ""  # gate | ride | sale | topup for the city's inputs
    business_id: str = ""  # tap id, sale id or payment id: how its outcome names it
    notified: bool = False  # the child has a guardian: a push is expected
    pushes: tuple[str, ...] = ()  # ids the push about it may carry on notify.deliveries.v1

    @classmethod
    def of(cls, message: ContractModel, key: str, *, source: str = "integrator:bench",
           headers: dict[str, str] | None = None, reply_to: str | None = None,
           signers: Signers | None = None, **extra: Any) -> Wire:
        """``signers``: the integrators' keys, for the types that must be signed."""
        env = Envelope.new(message, source=source, subject=key, reply_to=reply_to)
        topic, value = topic_for(type(message)).name, encode(message)
        all_headers = {**env.to_headers(), **(headers or {})}
        if signers is not None:
            all_headers.update(signers.headers(topic, all_headers, value))
        return cls(topic, key.encode(), value,
                   [(k, v.encode()) for k, v in all_headers.items()], env.id, **extra)


@dataclass
class City:
    run: str
    cards: list[CardIssued]
    guarded: dict[str, str]  # contract -> guardian account
    rng: random.Random
    inside: dict[str, bool]
    clock: dict[str, datetime]  # per card: the time of its last tap (taps in time order)
    signers: Signers  # the integrators' dev keys: cards and top-ups are signed
    serial: int = 0
    arrived: set[str] = field(default_factory=set)  # contracts whose first entry is published

    def _pushes(self, contract: str, *event_ids: str) -> tuple[str, ...]:
        """notify's public ids (uuid5 of ``<event id>:<guardian>:push``) of the push that an
        input of a guarded child brings about."""
        acc = self.guarded.get(contract)
        if acc is None:
            return ()
        return tuple(notification_id(f"{e}:{acc}:push") for e in event_ids)

    @classmethod
    def build(cls, rng: random.Random, cards: int, guardians: int, signers: Signers) -> City:
        run = f"c{uuid.uuid4().hex[:8]}"
        now = datetime.now(UTC)
        # Issued today (UTC, the school's zone) and tapped after that: issued yesterday, every
        # card would be absent yesterday, and access's sweep would tell notify so, twice each.
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        issued_at = max(midnight + timedelta(seconds=1), now - timedelta(hours=4))
        issued = [CardIssued(contract=str(c), card_uid=chip_uid(rng), school_id=SCHOOL,
                             school_tz=ZONE, student_id=uid("stu"), class_name="4Б",
                             birth_date=date(2015, 3, 1), issued_at=issued_at)
                  for c in rng.sample(range(10**7, 10**8), cards)]
        guarded = {c.contract: f"acc_{uuid.uuid4().hex[:16]}" for c in issued[:guardians]}
        start = max(issued_at + timedelta(minutes=1), now - timedelta(hours=3))
        return cls(run, issued, guarded, rng, {c.card_uid: False for c in issued},
                   {c.card_uid: start for c in issued}, signers)

    def seed(self, private_key: str) -> tuple[list[Wire], list[Wire], list[Wire]]:
        """Cards; start top-ups and guardians; the guardians' push tokens and preferences."""
        cards = [Wire.of(c, c.contract, signers=self.signers) for c in self.cards]
        now = datetime.now(UTC)
        money = [Wire.of(TopUpReceived(payment_id=f"{self.run}-start-{c.contract}",
                                       contract=c.contract, amount=START_BALANCE,
                                       channel="bank_card", paid_at=now), c.contract,
                         signers=self.signers)
                 for c in self.cards]
        commands = []
        for contract, acc in self.guarded.items():
            phone = f"+7912{self.rng.randrange(10**6, 10**7)}"
            money.append(Wire.of(GuardianContacts(account_id=acc, phone=phone, updated_at=now),
                                 acc, source="auth"))
            money.append(Wire.of(GuardianLinked(account_id=acc, contract=contract,
                                                role="primary", at=now), acc, source="auth"))
            token = issue_access_token(private_key, account_id=acc, session_id=uid("ses"),
                                       role=Role.PARENT, ttl_s=6 * 3600)
            auth = {"authorization": f"Bearer {token}"}
            commands.append(Wire.of(SetPreferences(request_id=uid("pref"), account_id=acc,
                                                   quiet_from="00:00", quiet_to="00:00"),
                                    acc, source="app:bench", headers=auth,
                                    reply_to="apps.replies.v1"))
            commands.append(Wire.of(RegisterPushToken(request_id=uid("push"), account_id=acc,
                                                      token=f"fcm-{uuid.uuid4().hex}"),
                                    acc, source="app:bench", headers=auth,
                                    reply_to="apps.replies.v1"))
        return cards, money, commands

    def _tap_time(self, card: CardIssued) -> datetime:
        at = self.clock[card.card_uid] + timedelta(seconds=1)
        self.clock[card.card_uid] = at
        return at

    def events(self, count: int, at_least: int = 0) -> list[Wire]:
        """``count`` inputs in the city's mix; then more of any kind with fewer than
        ``at_least`` (a short run still measures every latency)."""
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        picked = self.rng.choices(kinds, weights, k=count)
        for kind in kinds:
            picked += [kind] * max(0, at_least - picked.count(kind))
        out: list[Wire] = []
        for kind in picked:
            self.serial += 1
            i, rng = self.serial, self.rng
            card = rng.choice(self.cards)
            notified = card.contract in self.guarded
            if kind == "gate":
                direction = "out" if self.inside[card.card_uid] else "in"
                self.inside[card.card_uid] = not self.inside[card.card_uid]
                msg: ContractModel = GateTapped(
                    tap_id=f"{self.run}-g{i}", gate_id=f"gate-{i % 6}", school_id=SCHOOL,
                    card_uid=card.card_uid, direction=direction, tapped_at=self._tap_time(card))
                events = [f"access:{direction}:{msg.tap_id}"]
                if direction == "in" and card.contract not in self.arrived:
                    # the child's first entry of the day is told as "arrived safely"
                    self.arrived.add(card.contract)
                    day = msg.tapped_at.astimezone(NOTIFY_ZONE).date().isoformat()
                    events.append(f"journey:{card.contract}:{day}:arrived_safely")
                out.append(Wire.of(msg, card.card_uid, kind=kind, business_id=msg.tap_id,
                                   notified=notified,
                                   pushes=self._pushes(card.contract, *events)))
            elif kind == "ride":
                msg = ValidatorTapped(
                    tap_id=f"{self.run}-v{i}", validator_id=f"val-{i % 40}",
                    vehicle_id=f"bus-{i % 20}", route=rng.choice(["29", "12", "7", "22"]),
                    mode="bus", stop_id=f"stop-{i % 50}", card_uid=card.card_uid,
                    tapped_at=self._tap_time(card))
                out.append(Wire.of(msg, card.card_uid, kind=kind, business_id=msg.tap_id,
                                   notified=notified, pushes=self._pushes(
                                       card.contract, f"transit:ride:{msg.tap_id}")))
            elif kind == "sale":
                price = rng.randrange(30, 150) * 100
                msg = CanteenSaleRequested(
                    sale_id=f"{self.run}-s{i}", terminal_id=f"till-{i % 8}", school_id=SCHOOL,
                    card_uid=card.card_uid, sold_at=datetime.now(UTC),
                    items=[SaleItem(sku="meal", name="Обед", category="hot_meal", qty=1,
                                    unit_price=price)])
                out.append(Wire.of(msg, card.card_uid, kind=kind, business_id=msg.sale_id,
                                   notified=notified, pushes=self._pushes(
                                       card.contract, f"wallet:sale:{msg.sale_id}")))
            else:
                msg = TopUpReceived(payment_id=f"{self.run}-p{i}", contract=card.contract,
                                    amount=rng.randrange(1, 20) * 100_00, channel="terminal",
                                    paid_at=datetime.now(UTC))
                out.append(Wire.of(msg, card.contract, kind=kind, business_id=msg.payment_id,
                                   signers=self.signers, notified=notified, pushes=self._pushes(
                                       card.contract, f"wallet:topup:{msg.payment_id}")))
        return out


# --- measuring -------------------------------------------------------------------------------

def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)

    return {"p50": at(50), "p95": at(95), "p99": at(99)}


async def send_all(producer: AIOKafkaProducer, wires: list[Wire], *, topic: str | None = None,
                   rate: float = 0, sent: dict[str, float] | None = None) -> float:
    """Hand every message to the producer (paced at ``rate`` per second when given), then wait
    until the broker acknowledged them all; returns the time of the first send."""
    started = time.perf_counter()
    pending = []
    for n, w in enumerate(wires):
        if rate:
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        if sent is not None:
            sent[w.business_id or w.message_id] = time.perf_counter()
        pending.append(await producer.send(topic or w.topic, w.value, key=w.key,
                                           headers=w.headers))
    await asyncio.gather(*pending)
    return started


class Outcomes:
    """Reads the outcome topics (no consumer group) from their end at ``start`` and notes when
    each business id's outcome and first sent push arrived."""

    def __init__(self, bootstrap: str, topics: tuple[str, ...] = OUTCOME_TOPICS,
                 parse: Callable[[str, Any], str | None] | None = None) -> None:
        self.topics = topics
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         fetch_max_wait_ms=devstack.DEV_FETCH_MAX_WAIT_MS,
                                         max_partition_fetch_bytes=8 << 20)
        self.parse = parse
        self.done: dict[str, float] = {}
        self.pushed: dict[str, float] = {}
        self.push_ids: dict[str, str] = {}  # notification id -> business id
        self.changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def expect(self, wires: list[Wire]) -> None:
        self.push_ids = {p: w.business_id for w in wires for p in w.pushes}

    async def __aenter__(self) -> Outcomes:
        await self.consumer.start()

        async def known() -> list[TopicPartition] | None:
            await self.consumer.topics()
            tps = [TopicPartition(t, p) for t in self.topics
                   for p in (self.consumer.partitions_for_topic(t) or ())]
            return tps if {tp.topic for tp in tps} == set(self.topics) else None

        tps = await eventually(known, timeout=60, what="outcome topics' metadata")
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end now: only what comes after this counts
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    async def _read(self) -> None:
        try:
            await self._read_on()
        finally:  # a reader that stops (or fails) wakes every waiter: they check why
            async with self.changed:
                self.changed.notify_all()

    async def _read_on(self) -> None:
        while True:
            fetched = await self.consumer.getmany(timeout_ms=50, max_records=20_000)
            now = time.perf_counter()
            for records in fetched.values():
                for r in records:
                    self._note(r, now)
            if fetched:
                async with self.changed:
                    self.changed.notify_all()

    def _note(self, r: Any, now: float) -> None:
        if self.parse is not None:
            bid = self.parse(r.topic, r)
            if bid is not None:
                self.done.setdefault(bid, now)
            return
        topic = r.topic
        if topic in ("wallet.events.v1", "transit.events.v1"):
            ce_type = next((bytes(v).decode() for k, v in r.headers if k == "ce_type"), "")
            if ce_type.endswith(".TopUpApplied"):
                self.done.setdefault(json.loads(r.value)["payment_id"], now)
            elif ce_type.endswith(".RideRecorded"):
                self.done.setdefault(json.loads(r.value)["ride_id"], now)
        elif topic == "access.gate-decisions.v1":
            self.done.setdefault(json.loads(r.value)["tap_id"], now)
        elif topic == "wallet.sale-decisions.v1":
            self.done.setdefault(json.loads(r.value)["sale_id"], now)
        else:
            body = json.loads(r.value)
            bid = self.push_ids.get(body["notification_id"])
            if bid is not None and body["status"] == "sent":
                self.pushed.setdefault(bid, now)

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        def met_or_failed() -> bool:
            return predicate() or (self._task is not None and self._task.done())

        async def met() -> bool:
            async with self.changed:
                await self.changed.wait_for(met_or_failed)
            if self._task is not None and self._task.done():
                self._task.result()  # raises what stopped the reader
                raise RuntimeError("the outcome reader stopped")
            return True

        try:
            return await asyncio.wait_for(met(), timeout)
        except TimeoutError:
            print(f"  (timed out after {timeout:.0f} s waiting for {what})", flush=True)
            return False


async def handled(procs: dict[str, devstack.Proc]) -> dict[str, dict[str, float]]:
    """Per service: messages handled by message type (every outcome), from /metrics."""
    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name, proc in procs.items():
            text = (await client.get(f"http://127.0.0.1:{proc.port}/metrics")).text
            counts: dict[str, float] = defaultdict(float)
            for line in text.splitlines():
                if line.startswith(HANDLED + "{"):
                    labels, value = line[len(HANDLED) + 1:].rsplit("} ", 1)
                    kind = labels.split('type="', 1)[1].split('"', 1)[0]
                    counts[kind] += float(value)
            out[name] = dict(counts)
    return out


def _count(counts: dict[str, dict[str, float]], service: str, suffix: str) -> float:
    return sum(v for k, v in counts[service].items() if k.endswith("." + suffix))


async def wait_handled(procs: dict[str, devstack.Proc], need: dict[tuple[str, str], int],
                       timeout: float) -> None:
    async def check() -> bool:
        counts = await handled(procs)
        return all(_count(counts, s, t) >= n for (s, t), n in need.items())

    await eventually(check, timeout=timeout, interval=0.3,
                     what=f"services to handle {sorted(need)}")


async def quiesce(procs: dict[str, devstack.Proc], mongo_uri: str,
                  timeout: float = 300) -> None:
    """Until no service handles anything more for a second and notify has no push left to
    send (the backlogs are drained: the next run starts on idle services)."""
    last: list[Any] = [None, 0.0]
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)

    async def still() -> bool:
        if await client.schoolcard_notify.notify_messages.count_documents(
                {"status": {"$in": ["pending", "failed"]}}, limit=1):
            return False
        counts = await handled(procs)
        now = time.monotonic()
        if counts != last[0]:
            last[:] = [counts, now]
            return False
        return now - last[1] >= 1.0

    try:
        await eventually(still, timeout=timeout, interval=0.25, what="the services to go idle")
    finally:
        await client.close()


def proc_stats(pid: int) -> tuple[float, float]:
    """Peak RSS in MB (VmHWM) and CPU seconds (utime + stime) of a live process."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss_kb = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return round(rss_kb / 1024, 1), round(cpu, 2)


# --- the runs --------------------------------------------------------------------------------

def start_profiles(procs: dict[str, devstack.Proc], services: list[str],
                   out: Path) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` (collapsed stacks, ``<out>/<service>.txt``) on each of ``services``
    for as long as the closed loop runs; stopped with SIGINT, which makes it write."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/python -m pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--nonblocking", "--format", "raw", "--rate", "200",
                              "--pid", str(procs[s].pid), "--output", str(out / f"{s}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for s in services]


def stop_profiles(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


async def run_ours(city: City, env: dict[str, str], procs: dict[str, devstack.Proc],
                   producer: AIOKafkaProducer, events: int, open_seconds: float,
                   settle: float, profile: list[str] | None = None,
                   profile_dir: Path | None = None) -> tuple[dict[str, Any], list[Wire]]:
    bootstrap = env["SCHOOLCARD_KAFKA_BOOTSTRAP"]
    cards, money, commands = city.seed(env["AUTH_PRIVATE_KEY"])
    guardians = len(city.guarded)
    t0 = time.perf_counter()
    async with Requester(bootstrap) as req:
        admin = issue_access_token(env["AUTH_PRIVATE_KEY"], account_id="acc_benchadmin01",
                                   session_id="s1", role=Role.SCHOOL_ADMIN, school_id=SCHOOL)
        schedule = SetSchoolSchedule(
            request_id=uid("sched"), school_id=SCHOOL, time_zone=ZONE,
            hours=[DayHours(weekday=w, opens="00:00", closes="23:59", first_lesson="23:58")
                   for w in range(7)])
        reply = await req.send(schedule, SCHOOL, token=admin, timeout=120)
        assert reply.json().get("ok"), reply.json()
    await send_all(producer, cards)
    await wait_handled(procs, {(s, "CardIssued"): len(cards)
                               for s in ("auth", "wallet", "access", "transit")}, timeout=600)
    await send_all(producer, money)
    await wait_handled(procs, {("wallet", "TopUpReceived"): len(cards),
                               ("notify", "GuardianContacts"): guardians,
                               ("notify", "GuardianLinked"): guardians}, timeout=600)
    await send_all(producer, commands)
    await wait_handled(procs, {("notify", "SetPreferences"): guardians,
                               ("notify", "RegisterPushToken"): guardians}, timeout=300)
    await quiesce(procs, env["SCHOOLCARD_MONGO_URI"])
    print(f"  seeded {len(cards)} cards, {guardians} guardians in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    result: dict[str, Any] = {}
    closed = city.events(events)
    async with Outcomes(bootstrap) as outcomes:
        before = await handled(procs)
        cpu_before = {s: proc_stats(p.pid)[1] for s, p in procs.items()}
        wanted = {w.business_id for w in closed}
        outcomes.expect(closed)
        sent: dict[str, float] = {}
        spies = start_profiles(procs, profile, profile_dir or RUN_BASE) if profile else []
        try:
            started = await send_all(producer, closed, sent=sent)
            complete = await outcomes.wait(lambda: wanted <= outcomes.done.keys(), timeout=600,
                                           what="every closed-loop outcome")
        finally:
            await asyncio.to_thread(stop_profiles, spies)
        finished = max(outcomes.done[b] for b in wanted if b in outcomes.done)
        after = await handled(procs)
        seconds = finished - started
        got = len(wanted & outcomes.done.keys())
        result["events"] = events
        result["outcomes"] = got
        result["complete"] = complete
        result["seconds"] = round(seconds, 2)
        result["events_per_s"] = round(got / seconds, 1)
        result["per_service_msgs_per_s"] = {
            s: round((sum(after[s].values()) - sum(before[s].values())) / seconds, 1)
            for s in procs}
        result["handled_closed_loop"] = {
            s: {t.rsplit(".", 1)[-1]: int(v - before[s].get(t, 0))
                for t, v in sorted(after[s].items()) if v > before[s].get(t, 0)}
            for s in procs}
        result["cpu_s_closed_loop"] = {s: round(proc_stats(p.pid)[1] - cpu_before[s], 2)
                                       for s, p in procs.items()}
        result["closed_loop_latency_ms"] = _latencies(closed, sent, outcomes)
        print(f"  closed loop: {got}/{events} outcomes in {seconds:.1f} s = "
              f"{result['events_per_s']:.0f} events/s", flush=True)
        guarded = {w.business_id for w in closed if w.notified}
        await outcomes.wait(lambda: guarded <= outcomes.pushed.keys(), timeout=settle,
                            what="the closed loop's pushes")
    await quiesce(procs, env["SCHOOLCARD_MONGO_URI"])

    rate = max(5.0, result["events_per_s"] / 2)
    count = max(50, min(events, int(rate * open_seconds)))
    opened = city.events(count, at_least=20)
    async with Outcomes(bootstrap) as outcomes:
        wanted = {w.business_id for w in opened}
        outcomes.expect(opened)
        guarded = {w.business_id for w in opened if w.notified}
        sent = {}
        await send_all(producer, opened, rate=rate, sent=sent)
        await outcomes.wait(lambda: wanted <= outcomes.done.keys(), timeout=300,
                            what="every open-loop outcome")
        await outcomes.wait(lambda: guarded <= outcomes.pushed.keys(), timeout=settle,
                            what="the open loop's pushes")
        result["open_loop"] = {"rate_per_s": round(rate, 1), "events": count,
                               "outcomes": len(wanted & outcomes.done.keys()),
                               "pushes_expected": len(guarded),
                               "pushes_sent": len(guarded & outcomes.pushed.keys())}
        result["latency_ms"] = _latencies(opened, sent, outcomes)
        print(f"  open loop: {count} events at {rate:.0f}/s", flush=True)
    stats = {s: proc_stats(p.pid) for s, p in procs.items()}
    result["peak_rss_mb"] = {s: v[0] for s, v in stats.items()}
    result["cpu_s"] = {s: v[1] for s, v in stats.items()}
    return result, closed


def _latencies(wires: list[Wire], sent: dict[str, float],
               outcomes: Outcomes) -> dict[str, dict[str, float | None]]:
    samples: dict[str, list[float]] = {name: [] for name in LATENCIES}
    for w in wires:
        t = sent[w.business_id]
        if w.kind in KIND_LATENCY and w.business_id in outcomes.done:
            samples[KIND_LATENCY[w.kind]].append((outcomes.done[w.business_id] - t) * 1000)
        if w.notified and w.business_id in outcomes.pushed:
            samples["notification"].append((outcomes.pushed[w.business_id] - t) * 1000)
    return {name: {**percentiles(v), "n": len(v)} for name, v in samples.items()}


def _reference_output(topic: str, r: Any) -> str | None:
    return str(json.loads(r.value)["in"])


async def run_reference(kind: str, wires: list[Wire], env: dict[str, str], run_dir: Path,
                        producer: AIOKafkaProducer, run: str) -> dict[str, Any]:
    bootstrap = env["SCHOOLCARD_KAFKA_BOOTSTRAP"]
    topic_in, topic_out = f"bench.{kind}-{run}.in.v1", f"bench.{kind}-{run}.out.v1"
    partitions = int(env["SCHOOLCARD_TOPIC_PARTITIONS"])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic_in, partitions, 1),
                                   NewTopic(topic_out, partitions, 1)])
    finally:
        await admin.close()
    log = (run_dir / "logs" / f"ref-{kind}.log").open("ab")
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below by its pid
        [sys.executable, "-m", "tests.bench.references", kind, "--bootstrap", bootstrap,
         "--mongo", env["SCHOOLCARD_MONGO_URI"], "--db", f"bench_{kind}_{run}",
         "--topic-in", topic_in, "--topic-out", topic_out, "--group", f"bench-{kind}-{run}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=devstack.ROOT, start_new_session=True)
    REFERENCES.append(proc)
    try:
        async with Outcomes(bootstrap, (topic_out,), parse=_reference_output) as outcomes:
            # warm-up: a few messages on every partition; the group has joined once they are out
            warm = [Wire(topic_in, f"warm-{i}".encode(), b"{}", [("ce_id", f"warm-{i}".encode())],
                         f"warm-{i}") for i in range(8 * partitions)]
            await send_all(producer, warm)
            ready = {w.message_id for w in warm}
            if not await outcomes.wait(lambda: ready <= outcomes.done.keys(), timeout=120,
                                       what=f"the {kind} reference to serve"):
                raise RuntimeError(f"{kind} reference did not start; see {log.name}")
            wanted = {w.message_id for w in wires}
            started = await send_all(producer, wires, topic=topic_in)
            await outcomes.wait(lambda: wanted <= outcomes.done.keys(), timeout=900,
                                what=f"every {kind} output")
            got = wanted & outcomes.done.keys()
            seconds = max(outcomes.done[m] for m in got) - started
            rss, cpu = proc_stats(proc.pid)
        result = {"events": len(wires), "outputs": len(got), "seconds": round(seconds, 2),
                  "events_per_s": round(len(got) / seconds, 1), "peak_rss_mb": rss,
                  "cpu_s": cpu}
        print(f"  {kind}: {len(got)}/{len(wires)} in {seconds:.1f} s = "
              f"{result['events_per_s']:.0f} events/s", flush=True)
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 20)
        except TimeoutError:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        log.close()


async def bench(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    kafka = devstack.start_broker(run_dir)
    mongo = devstack.start_mongo(run_dir)
    started: list[devstack.Proc] = []
    try:
        sinks, sink_env = devstack.start_sinks(run_dir)
        started.append(sinks)
        env = devstack.infra_env(kafka.port, mongo.port, run_dir)
        env["SCHOOLCARD_LOG_LEVEL"] = os.environ.get("SCHOOLCARD_LOG_LEVEL", "WARNING")
        # Auth takes no part in the measured loops; batching its CardIssued speeds the seeding
        # of thousands of cards (one transaction per message by default: ~20 cards/s).
        env["AUTH_CONSUMER_BATCH_MAX"] = "100"
        procs = {s: devstack.start_service(s, run_dir, env, extra_env=sink_env)
                 for s in devstack.SERVICES}
        started.extend(procs.values())
        for proc in procs.values():
            await asyncio.to_thread(devstack.wait_ready, proc, 120)
        city = City.build(random.Random(args.seed), args.cards, min(args.guardians, args.cards),
                          devstack.integrator_signers(run_dir))
        producer = AIOKafkaProducer(bootstrap_servers=env["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                                    acks="all", linger_ms=2, max_batch_size=256 * 1024)
        await producer.start()
        try:
            ours, closed = await run_ours(city, env, procs, producer, args.events,
                                          args.open_seconds, args.settle,
                                          profile=args.profile, profile_dir=args.out.parent)
            for proc in procs.values():  # the references run on a quiet machine
                await asyncio.to_thread(proc.stop)
            if args.no_references:
                return {"ours": ours}
            raw = await run_reference("raw", closed, env, run_dir, producer, city.run)
            naive = await run_reference("naive", closed, env, run_dir, producer, city.run)
        finally:
            await producer.stop()
    finally:
        for proc in reversed(started):
            await asyncio.to_thread(proc.stop)
        mongo.stop()
        kafka.stop()
    return {"ours": ours, "raw": raw, "naive": naive, "ratios": {
        "ours_over_raw": round(ours["events_per_s"] / raw["events_per_s"], 3),
        "ours_over_naive": round(ours["events_per_s"] / naive["events_per_s"], 3)}}


def _versions() -> dict[str, str]:
    out = {}
    for name in ("faststream", "aiokafka", "pymongo"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.0f}" if isinstance(v, float) and v >= 100 else f"{v}")


def report(figures: dict[str, Any]) -> str:
    ours = figures["ours"]
    ratios = figures.get("ratios", {"ours_over_raw": None, "ours_over_naive": None})
    raw, naive = figures.get("raw", {}), figures.get("naive", {})
    lines = [
        f"city bench: {figures['params']['cards']} cards, {figures['params']['events']} events, "
        f"{figures['params']['guardians']} guardians; {figures['machine']['cpu_count']} cores",
        f"{'figure':34} {'value':>10}   target",
        f"{'ours events/s (closed loop)':34} {_fmt(ours['events_per_s']):>10}   "
        f"{TARGETS['events_per_s']}",
        f"{'raw events/s':34} {_fmt(raw.get('events_per_s')):>10}",
        f"{'naive events/s':34} {_fmt(naive.get('events_per_s')):>10}",
        f"{'ours / raw':34} {_fmt(ratios['ours_over_raw']):>10}   {TARGETS['ours_over_raw']}",
        f"{'ours / naive':34} {_fmt(ratios['ours_over_naive']):>10}   "
        f"{TARGETS['ours_over_naive']}",
        f"latency ms at {ours['open_loop']['rate_per_s']}/s (open loop)  p50 / p95 / p99 (n)",
    ]
    goals = {"gate_decision": "p99 <= 50", "topup_spendable": "p99 <= 1000",
             "notification": "p95 <= 1000"}
    for name in LATENCIES:
        q = ours["latency_ms"][name]
        lines.append(f"  {name:32} {_fmt(q['p50'])} / {_fmt(q['p95'])} / {_fmt(q['p99'])} "
                     f"({q['n']})   {goals.get(name, '')}")
    lines.append(f"{'service':10} {'msgs/s':>8} {'peak RSS MB':>12} {'CPU s':>8}   "
                 f"RSS target {TARGETS['peak_rss_mb']}")
    for s in ours["per_service_msgs_per_s"]:
        lines.append(f"{s:10} {_fmt(ours['per_service_msgs_per_s'][s]):>8} "
                     f"{_fmt(ours['peak_rss_mb'][s]):>12} {_fmt(ours['cpu_s'][s]):>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cards", type=int, default=None, help="default 5000 (quick: 200)")
    parser.add_argument("--events", type=int, default=None, help="default 20000 (quick: 1000)")
    parser.add_argument("--guardians", type=int, default=None,
                        help="children with a guardian to notify; default 1000 (quick: 60)")
    parser.add_argument("--open-seconds", type=float, default=None,
                        help="length of the open-loop run; default 20 (quick: 5)")
    parser.add_argument("--settle", type=float, default=None,
                        help="longest wait for the pushes after the outcomes; default 60 "
                             "(quick: 20)")
    parser.add_argument("--quick", action="store_true", help="small counts, about a minute")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument("--no-references", action="store_true",
                        help="skip the raw and naive reference pipelines (A/B runs of ours)")
    parser.add_argument("--profile", type=lambda v: v.split(","), default=None,
                        metavar="SERVICE[,SERVICE]",
                        help="py-spy record these services during the closed loop; collapsed "
                             "stacks in <out's folder>/<service>.txt")
    parser.add_argument("--out", type=Path, default=RUN_BASE / "latest.json",
                        help="default $RUN_DIR/bench/latest.json ($RUN_DIR: .run)")
    args = parser.parse_args()
    defaults = ((200, 1000, 60, 5.0, 20.0) if args.quick else (5000, 20000, 1000, 20.0, 60.0))
    for name, value in zip(("cards", "events", "guardians", "open_seconds", "settle"), defaults,
                           strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    RUN_BASE.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="city-", dir=RUN_BASE))

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        figures = asyncio.run(bench(args, run_dir))
    except BaseException:
        print(f"logs kept in {run_dir}/logs", file=sys.stderr)
        raise
    finally:  # whatever stopped the run: no process of it outlives it
        for proc in reversed(devstack.SPAWNED):
            proc.stop()
        for child in REFERENCES:
            if child.poll() is None:
                child.kill()
                child.wait()
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "versions": _versions(),
        "params": {"cards": args.cards, "events": args.events, "guardians": args.guardians,
                   "quick": args.quick, "mix_per_child_day": dict(MIX),
                   "partitions": devstack.DEV_PARTITIONS},
        "targets": TARGETS,
        "notes": NOTES,
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print(report(figures))
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
