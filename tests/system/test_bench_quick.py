"""``make bench-quick`` works: the city benchmark, small, in a subprocess (its own broker,
database, sinks and five service processes, then the two references), writes every figure of
issue 13 §4. Only the shape is checked (and the figures that cannot be zero when measured);
the figures themselves are for reading, not for asserting on a shared machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local import stack as devstack

pytestmark = pytest.mark.system

SERVICES = devstack.SERVICES
LATENCIES = ("gate_decision", "till_decision", "topup_spendable", "notification")


def test_bench_quick_writes_every_figure(run_dir: Path) -> None:
    out = run_dir / "bench-quick.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.city", "--quick", "--out", str(out)],
        cwd=devstack.ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "RUN_DIR": str(run_dir)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert "ours / raw" in done.stdout  # the table was printed

    ours = figures["ours"]
    assert ours["events_per_s"] > 0
    assert set(ours["per_service_msgs_per_s"]) == set(SERVICES)
    # auth consumes nothing of the city's traffic (cards only, before the run): it may be 0
    assert all(ours["per_service_msgs_per_s"][s] > 0 for s in SERVICES if s != "auth")
    for name in LATENCIES:
        q = ours["latency_ms"][name]
        assert all(q[p] is not None and q[p] > 0 for p in ("p50", "p95", "p99")), (name, q)
    for measure in ("peak_rss_mb", "cpu_s"):
        assert set(ours[measure]) == set(SERVICES)
        assert all(v > 0 for v in ours[measure].values()), (measure, ours[measure])
    assert figures["raw"]["events_per_s"] > 0
    assert figures["naive"]["events_per_s"] > 0
    assert figures["ratios"]["ours_over_raw"] > 0
    assert figures["ratios"]["ours_over_naive"] > 0
    assert {"faststream", "aiokafka", "pymongo"} <= set(figures["versions"])
    assert figures["machine"]["cpu_count"] and figures["date"]
