"""``make run`` interrupted: the scenario (``python -m deploy.local.schoolday``) stops the whole
embedded stack it started — broker, database, sinks, the five services and the gateway — and
exits with the shell's code for the signal: SIGTERM (``timeout``, a CI cancel) 143, Ctrl-C
(SIGINT) 130. One line says so; no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local import stack as devstack

pytestmark = pytest.mark.system


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


def holders(run_dir: Path) -> set[int]:
    """Processes with a file open under ``run_dir`` (logs, the database): what an orphaned
    part of the stack would still hold, whether or not the stack file listed it."""
    found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd).startswith(str(run_dir)) for fd in fd_dir.iterdir()):
                found.add(int(fd_dir.parent.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def recorded(run_dir: Path) -> dict[str, dict]:
    """The processes the scenario's stack file lists now (empty when there is none)."""
    try:
        return {p["name"]: p for p in json.loads((run_dir / "stack.json").read_text())["procs"]}
    except (FileNotFoundError, ValueError):
        return {}


STACK_SERVICES = (*devstack.SERVICES, "gateway")
"""What the scenario's stack runs over the broker, database and sinks: the gateway starts once
the five services are ready."""


def services_ready(procs: dict[str, dict]) -> bool:
    if not all(name in procs for name in STACK_SERVICES):
        return False
    try:
        return all(httpx.get(f"http://127.0.0.1:{procs[name]['port']}/readyz",
                             timeout=1).status_code == 200 for name in STACK_SERVICES)
    except httpx.HTTPError:
        return False


@pytest.fixture
def scenario(run_dir: Path) -> Iterator[Callable[[str], tuple[subprocess.Popen[str], Path]]]:
    """Start the scenario for a tiny city with its own run directory. A scenario a failed test
    left running is stopped the way it stops its stack (SIGTERM), and whatever of its stack
    still runs after that is killed: a failure leaves no broker or service behind."""
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(name: str) -> tuple[subprocess.Popen[str], Path]:
        own = run_dir / name
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.local.schoolday", "--schools", "1", "--students",
             "8", "--run-dir", str(own)], cwd=devstack.ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "100"})
        started.append((proc, own))
        return proc, own

    yield start
    for proc, own in started:
        left = recorded(own)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        for p in left.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p["pid"], signal.SIGKILL)


def seen_until_exit(proc: subprocess.Popen[str], run_dir: Path,
                    pids: dict[str, int], timeout: float) -> None:
    """Collect every pid the stack file lists until the scenario exits (it deletes the file
    when the stack is down)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        pids.update({name: p["pid"] for name, p in recorded(run_dir).items()})
        time.sleep(0.1)


def test_sigterm_once_the_stack_is_up_stops_every_process_and_exits_143(scenario) -> None:
    proc, run_dir = scenario("sigterm")
    devstack.wait_for(lambda: services_ready(recorded(run_dir)) or proc.poll() is not None,
                      timeout=120, what="the scenario's stack to be ready")
    assert proc.poll() is None, proc.communicate()
    pids = {name: p["pid"] for name, p in recorded(run_dir).items()}
    assert set(pids) == {"kafka", "mongo", "sinks", *STACK_SERVICES}

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, (out, err)
    assert "interrupted, stopping the stack" in out
    assert "Traceback" not in out + err, err
    devstack.wait_for(lambda: not any(alive(pid) for pid in pids.values()), timeout=10,
                      what="no process of the stack left")
    assert holders(run_dir) == set()
    assert not (run_dir / "stack.json").exists()


def test_ctrl_c_while_the_stack_is_starting_stops_what_started_and_exits_130(
        scenario) -> None:
    proc, run_dir = scenario("sigint")
    # the broker, database and sinks run and the services are starting
    devstack.wait_for(lambda: "sinks" in recorded(run_dir) or proc.poll() is not None,
                      timeout=60, what="the scenario to start its stack")
    assert proc.poll() is None, proc.communicate()
    pids = {name: p["pid"] for name, p in recorded(run_dir).items()}

    proc.send_signal(signal.SIGINT)
    seen_until_exit(proc, run_dir, pids, timeout=60)
    out, err = proc.communicate(timeout=5)

    assert proc.returncode == 130, (out, err)
    assert "interrupted, stopping the stack" in out
    assert "Traceback" not in out + err, err
    assert {"kafka", "mongo", "sinks"} <= set(pids)
    devstack.wait_for(lambda: not any(alive(pid) for pid in pids.values()), timeout=10,
                      what="no process of the stack left")
    assert holders(run_dir) == set()
