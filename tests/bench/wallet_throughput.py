"""Benchmark: top-ups through wallet, end to end on the embedded broker and database.

Publishes N top-ups over M accounts as an integrator would, with wallet running as its own
process, and measures (a) sustained throughput from first publish to last TopUpApplied and
(b) the publish -> TopUpApplied latency per payment (p50/p95/p99).
``python -m tests.bench.wallet_throughput [--topups N] [--accounts M]``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from contracts.integrations import CardIssued, TopUpReceived
from deploy.local import stack as devstack
from tests.support import Integrator, TopicReader, chip_uid, uid


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(topups: int, accounts: int, run_dir: Path, rate: float = 0) -> dict[str, float]:
    kafka = devstack.start_broker(run_dir)
    mongo = devstack.start_mongo(run_dir)
    env = devstack.infra_env(kafka.port, mongo.port, run_dir)
    wallet = devstack.start_service("wallet", run_dir, env)
    try:
        devstack.wait_ready(wallet)
        bootstrap = env["SCHOOLCARD_KAFKA_BOOTSTRAP"]
        rng = random.Random(1)
        now = datetime.now(UTC)
        contracts = [f"{rng.randrange(10**7, 10**8)}" for _ in range(accounts)]
        signers = devstack.integrator_signers(run_dir)
        async with Integrator(bootstrap, signers=signers) as integrator, \
                TopicReader(bootstrap, "wallet.events.v1") as events:
            for c in contracts:
                await integrator.publish(CardIssued(
                    contract=c, card_uid=chip_uid(rng), school_id="bench",
                    school_tz="Europe/Samara", student_id=uid("s"), class_name="1А",
                    birth_date=date(2018, 1, 1), issued_at=now), c)
            await events.wait_for(lambda r: r.type.endswith("AccountOpened"), count=accounts,
                                  timeout=120)
            sent: dict[str, float] = {}
            latencies: dict[str, float] = {}

            async def collect() -> None:
                deadline = time.monotonic() + 600
                while len(latencies) < topups and time.monotonic() < deadline:
                    for r in await events.poll():
                        if r.type.endswith("TopUpApplied"):
                            pid = r.json()["payment_id"]
                            if pid in sent and pid not in latencies:
                                latencies[pid] = time.perf_counter() - sent[pid]
                    events.records.clear()

            collector = asyncio.create_task(collect())
            started = time.perf_counter()
            for i in range(topups):
                t = TopUpReceived(payment_id=f"bench-{i}", contract=rng.choice(contracts),
                                  amount=100_00, channel="terminal", paid_at=now)
                if rate:  # paced: latency without a queue in front of the service
                    await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                sent[t.payment_id] = time.perf_counter()
                await integrator.publish(t, t.contract)
            await collector
            elapsed = time.perf_counter() - started
        lat = list(latencies.values())
        return {"topups": float(len(lat)), "seconds": elapsed, "per_s": len(lat) / elapsed,
                "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000,
                "p99_ms": percentile(lat, 99) * 1000}
    finally:
        wallet.stop()
        mongo.stop()
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topups", type=int, default=2000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="paced run: top-ups per second for the latency figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="schoolcard-bench-") as d:
        burst = asyncio.run(run(args.topups, args.accounts, Path(d) / "burst"))
        paced = asyncio.run(run(max(100, int(args.rate * 15)), args.accounts, Path(d) / "paced",
                                rate=args.rate))
    print(f"wallet burst: {int(burst['topups'])} top-ups over {args.accounts} accounts in "
          f"{burst['seconds']:.1f} s = {burst['per_s']:.0f}/s sustained "
          f"(latency incl. queueing p50 {burst['p50_ms']:.0f} ms, p99 {burst['p99_ms']:.0f} ms)")
    print(f"wallet paced at {args.rate:.0f}/s: publish->TopUpApplied p50 "
          f"{paced['p50_ms']:.0f} ms, p95 {paced['p95_ms']:.0f} ms, p99 {paced['p99_ms']:.0f} ms")


if __name__ == "__main__":
    main()
