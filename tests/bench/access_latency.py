"""Tap-to-decision latency of access: ``python -m tests.bench.access_latency [--taps N]
[--rate R] [--students S]``.

Starts its own broker and MongoDB-protocol server (deploy.local.stack), runs access in-process
with the system clock, issues S cards to one school with a schedule open all day, then publishes
N gate taps at R taps/s (open loop, each tap's send time recorded) and reads the decisions back
from access.gate-decisions.v1. Latency = decision received - tap sent, wall clock, so it
includes the broker both ways, the MongoDB transaction and the outbox relay. Prints p50/p90/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from contracts.access import DayHours, SetSchoolSchedule
from contracts.auth import Role
from contracts.envelope import Envelope
from contracts.integrations import CardIssued, GateTapped
from deploy.local import stack
from services.runtime.logs import configure_logging
from services.runtime.service import Service
from services.runtime.settings import InfraSettings
from services.runtime.tokens import issue_access_token
from tests.support import Integrator, Requester, TopicReader, chip_uid, uid


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(env: dict[str, str], taps: int, rate: float, students: int,
                run_dir: Path) -> None:
    from services.access import app
    from services.access.settings import Settings

    infra = InfraSettings(kafka_bootstrap=env["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                          mongo_uri=env["SCHOOLCARD_MONGO_URI"],
                          auth_public_key=env["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                          integrator_keys=json.loads(env["SCHOOLCARD_INTEGRATOR_KEYS"]),
                          topic_partitions=int(env["SCHOOLCARD_TOPIC_PARTITIONS"]),
                          kafka_fetch_max_wait_ms=int(env["SCHOOLCARD_KAFKA_FETCH_MAX_WAIT_MS"]),
                          kafka_idempotence=env["SCHOOLCARD_KAFKA_IDEMPOTENCE"] == "true",
                          mongo_dialect=env["SCHOOLCARD_MONGO_DIALECT"],
                          mongo_snapshot_reads=False, log_json=False, log_level="WARNING")
    service = Service("access", Settings(infra=infra, outbox_idle_ms=50), app.wire)
    await service.start()
    bootstrap = infra.kafka_bootstrap
    school_id = f"bench-{uid('s')[2:].lower()}"
    zone = "UTC"
    try:
        signers = stack.integrator_signers(run_dir)
        async with Integrator(bootstrap, signers=signers) as pub, Requester(bootstrap) as req, \
                TopicReader(bootstrap, "access.allow-list.v1") as allow_list, \
                TopicReader(bootstrap, "access.gate-decisions.v1") as decisions:
            admin = issue_access_token(env["AUTH_PRIVATE_KEY"], account_id="acc_benchadmin1",
                                       session_id="s1", role=Role.SCHOOL_ADMIN,
                                       school_id=school_id)
            schedule = SetSchoolSchedule(
                request_id=uid("sched"), school_id=school_id, time_zone=zone,
                hours=[DayHours(weekday=w, opens="00:00", closes="23:59", first_lesson="23:58")
                       for w in range(7)])
            assert (await req.send(schedule, school_id, token=admin)).json()["ok"]
            cards = [CardIssued(contract=str(c), card_uid=chip_uid(),
                                school_id=school_id, school_tz=zone, student_id=uid("stu"),
                                class_name="5A", birth_date=date(2014, 1, 1),
                                issued_at=datetime.now(UTC) - timedelta(days=1))
                     for c in random.sample(range(10**7, 10**8), students)]
            for card in cards:
                await pub.publish(card, card.contract)
            ids = {c.card_uid for c in cards}
            await allow_list.wait_for(lambda r: r.key in ids, count=len(ids), timeout=600)

            sent: dict[str, float] = {}
            received: dict[str, float] = {}
            stop = asyncio.Event()

            async def read() -> None:
                while not stop.is_set():
                    batch = await decisions.consumer.getmany(timeout_ms=50)
                    now = time.perf_counter()
                    for records in batch.values():
                        for r in records:
                            tap_id = r.value.split(b'"tap_id":"', 1)[1].split(b'"', 1)[0].decode()
                            if tap_id in sent and tap_id not in received:
                                received[tap_id] = now

            reader = asyncio.create_task(read())
            inside: set[str] = set()
            started = time.perf_counter()
            for n in range(taps):
                card = cards[n % len(cards)]
                direction = "out" if card.card_uid in inside else "in"
                inside.symmetric_difference_update({card.card_uid})
                tap = GateTapped(tap_id=uid("tap"), gate_id=f"gate-{n % 10}",
                                 school_id=school_id, card_uid=card.card_uid,
                                 direction=direction, tapped_at=datetime.now(UTC))
                sent[tap.tap_id] = time.perf_counter()
                await pub.producer.send(
                    "integrations.gate-taps.v1", tap.model_dump_json().encode(),
                    key=card.card_uid.encode(),
                    headers=[(k, v.encode()) for k, v in
                             Envelope.new(tap, source="bench").to_headers().items()])
                delay = started + (n + 1) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            deadline = time.perf_counter() + 300
            while len(received) < taps and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # a figure for a benchmark: poll, then print
            stop.set()
            await reader
            elapsed = max(received.values()) - started if received else float("nan")
    finally:
        await service.stop()
    latencies = [(received[t] - sent[t]) * 1000 for t in received]
    print(f"access tap-to-decision, {taps} taps offered at {rate:g}/s over {students} cards, "
          f"10 gates, in-process service, nx-27017 + Tansu on {os.cpu_count()} cores")
    print(f"  decided {len(latencies)}/{taps} in {elapsed:.1f} s "
          f"({len(latencies) / elapsed:.1f} decisions/s)")
    if latencies:
        print(f"  latency ms: p50 {_pct(latencies, 0.5):.0f}  p90 {_pct(latencies, 0.9):.0f}  "
              f"p99 {_pct(latencies, 0.99):.0f}  max {max(latencies):.0f}  "
              f"mean {statistics.fmean(latencies):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--taps", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="taps offered per second")
    parser.add_argument("--students", type=int, default=100)
    args = parser.parse_args()
    configure_logging("bench", level="WARNING", json=False)
    run_dir = Path(tempfile.mkdtemp(prefix="access-bench-", dir=stack.ROOT / ".run"))
    kafka = stack.start_broker(run_dir)
    mongo = stack.start_mongo(run_dir)
    try:
        asyncio.run(bench(stack.infra_env(kafka.port, mongo.port, run_dir), args.taps,
                          args.rate, args.students, run_dir))
    finally:
        mongo.stop()
        kafka.stop()


if __name__ == "__main__":
    main()
