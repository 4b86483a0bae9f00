"""The fault suite's shared parts: a world of its own (broker, database and service
processes it may kill), and the report every scenario ends with — one line
``fault-result {"scenario": ..., "lost": N, "double_applied": N, ...}`` per scenario, and a table
of all of them at the end of the run (also written to ``.run/faults/results.jsonl``).

``FAULTS_SCALE`` (default 1.0) scales the event counts of the scenarios that take it; the
fast subset in ``make test`` runs the unmarked variants."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from deploy.local import stack as devstack
from tests.support import DevSigners

RESULTS: list[dict[str, Any]] = []
RESULTS_FILE = devstack.ROOT / ".run" / "faults" / "results.jsonl"


def scale(n: int) -> int:
    """``n`` events scaled by ``FAULTS_SCALE`` (at least 10)."""
    return max(10, int(n * float(os.environ.get("FAULTS_SCALE", "1"))))


class World:
    """A broker, a database and service processes of one scenario, under its own directory
    in ``.run/faults`` (kept: the logs of a failed scenario can be read)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.kafka = devstack.start_broker(run_dir)
        self.mongo = devstack.start_mongo(run_dir)
        self.env = devstack.infra_env(self.kafka.port, self.mongo.port, run_dir)
        DevSigners.use(self.bootstrap, devstack.integrator_signers(run_dir))
        self.db = MongoClient(self.env["SCHOOLCARD_MONGO_URI"], tz_aware=True,
                              serverSelectionTimeoutMS=2000).schoolcard_wallet
        self.services: list[devstack.Proc] = []

    @property
    def bootstrap(self) -> str:
        return self.env["SCHOOLCARD_KAFKA_BOOTSTRAP"]

    def start(self, service: str, name: str, wait: bool = True,
              env: dict[str, str] | None = None) -> devstack.Proc:
        proc = devstack.start_service(service, self.run_dir, self.env, instance=name,
                                      extra_env=env)
        self.services.append(proc)
        if wait:
            devstack.wait_ready(proc, timeout=90)
        return proc

    def wallet(self, name: str, wait: bool = True) -> devstack.Proc:
        return self.start("wallet", name, wait)

    def database(self, service: str) -> Any:
        return self.db.client[f"schoolcard_{service}"]

    def start_sinks(self) -> None:
        """The mail and SMS/push sinks notify delivers to (their settings join ``env``)."""
        sinks, sink_env = devstack.start_sinks(self.run_dir)
        self.services.append(sinks)
        self.env.update(sink_env)

    def kafka_freeze(self) -> None:
        os.kill(self.kafka.pid, signal.SIGSTOP)

    def kafka_thaw(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.kafka.pid, signal.SIGCONT)

    def restart_mongo(self) -> None:
        self.mongo = devstack.start_mongo(self.run_dir, self.mongo.port)

    def close(self) -> None:
        self.kafka_thaw()  # a scenario that failed while the broker was frozen
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


Report = Callable[..., dict[str, Any]]


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Report:
    """``report(scenario, lost=, double_applied=, **figures)``: print the scenario's
    fault-result line and keep it for the closing table; the test then asserts on it."""
    started = time.monotonic()

    def report(scenario: str, *, lost: int, double_applied: int, **figures: Any) -> dict[str, Any]:
        result = {"scenario": scenario, "lost": lost, "double_applied": double_applied,
                  **figures, "seconds": round(time.monotonic() - started, 1)}
        RESULTS.append(result)
        line = "fault-result " + json.dumps(result, ensure_ascii=False)
        print(line)
        RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS_FILE.open("a") as out:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        return result

    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("fault suite")
    for result in RESULTS:
        tr.write_line("fault-result " + json.dumps(result, ensure_ascii=False))
    tr.write_line("")
    tr.write_line(f"{'scenario':<44} {'lost':>5} {'double':>7} {'seconds':>8}  figures")
    for r in RESULTS:
        extra = ", ".join(f"{k}={v}" for k, v in r.items()
                          if k not in ("scenario", "lost", "double_applied", "seconds"))
        tr.write_line(f"{r['scenario']:<44} {r['lost']:>5} {r['double_applied']:>7} "
                      f"{r['seconds']:>8}  {extra}")
