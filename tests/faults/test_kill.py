"""kill -9 of every service in turn under mixed load: auth, wallet, access, transit and notify
run as their own processes while a city's top-ups, canteen sales, turnstile and validator taps
and balance queries arrive; each service is killed in turn at random moments, some of them by
a failpoint right after a transaction committed and before its messages were published (the
worst moment for an outbox). Afterwards nothing is lost, nothing applied twice, every balance
equals the reference model (``tests/faults/load.py``) and every query was answered; the time
the system needs to drain after the last kill is printed."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import pytest

from deploy.local import stack as devstack
from tests.faults.conftest import Report, World, scale
from tests.faults.load import City, Watch, assert_clean
from tests.support import Integrator, eventually

pytestmark = pytest.mark.system

SERVICES = devstack.SERVICES


def fast_takeover() -> dict[str, dict[str, str]]:
    """A killed instance's unpublished records are taken over after 3 s, not 30."""
    return {s: {f"{s.upper()}_OUTBOX_TAKEOVER_S": "3"} for s in SERVICES}


async def publish_paced(city: City, w: World, per_s: float) -> None:
    async with Integrator(w.bootstrap, source="integrator:fault") as integrator:
        started = time.monotonic()
        for i, event in enumerate(city.events):
            await event.publish(integrator)
            ahead = i / per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)


async def start_all(w: World, env: dict[str, dict[str, str]],
                    name: str) -> dict[str, devstack.Proc]:
    procs = {s: w.start(s, name, wait=False, env=env[s]) for s in SERVICES}
    for proc in procs.values():
        await asyncio.to_thread(devstack.wait_ready, proc, 90)
    return procs


@pytest.mark.parametrize("events, kills", [
    (600, 5), pytest.param(10_000, 20, marks=[pytest.mark.slow, pytest.mark.timeout(3_600)])])
async def test_kill_minus_nine_of_every_service_in_turn_loses_and_doubles_nothing(
        events: int, kills: int, world: World, fault_report: Report) -> None:
    w = world
    rng = random.Random(events * 31 + kills)
    events = scale(events) if events > 600 else events
    w.start_sinks()
    env = fast_takeover()
    procs = await start_all(w, env, "0")
    city = City.build(rng, events, private_key=w.env["AUTH_PRIVATE_KEY"])
    await city.seed(w)
    per_s = 60.0
    async with Watch(city, w) as watch:
        publisher = asyncio.create_task(publish_paced(city, w, per_s))
        pause = max(2.0, len(city.events) / per_s / kills)  # kills spread over the load
        failpoint_crashes = 0
        for n in range(kills):
            await asyncio.sleep(rng.uniform(0.5, 1.5) * pause)
            service = SERVICES[n % len(SERVICES)]
            await asyncio.to_thread(procs[service].stop, 5.0, signal.SIGKILL)
            if n % 4 == 1:  # wallet first: the busiest, it commits soon after a restart
                # the next instance dies by itself right after a commit (of a batch, most
                # often), before publishing
                crash = {**env[service],
                         "SCHOOLCARD_FAILPOINT_CRASH_AFTER_COMMIT": str(rng.randint(1, 2)),
                         f"{service.upper()}_CONSUMER_BATCH_MAX": str(rng.choice([1, 10, 100]))}
                doomed = w.start(service, f"k{n}-failpoint", wait=False, env=crash)
                try:
                    await eventually(lambda p=doomed: asyncio.to_thread(lambda: not p.alive()),
                                     timeout=120, interval=0.5, what="the failpoint crash")
                    failpoint_crashes += 1
                except AssertionError:  # committed too little to reach it: kill it anyway
                    await asyncio.to_thread(doomed.stop, 5.0, signal.SIGKILL)
            procs[service] = w.start(service, f"k{n}", wait=False, env=env[service])
        last_kill = time.monotonic()
        await publisher
        for proc in procs.values():
            await asyncio.to_thread(devstack.wait_ready, proc, 120)
        await eventually(watch.complete, timeout=300 + events / 20, interval=1,
                         what="every event's outcome after the last kill")
        drain_s = round(time.monotonic() - last_kill, 1)
        result: dict[str, Any] = await watch.result()
    alive = sum(1 for p in procs.values() if p.alive())
    fault_report(f"kill -9 x{kills}, all services", **result, kills=kills,
                 failpoint_crashes=failpoint_crashes, drain_after_last_kill_s=drain_s,
                 services_alive=alive)
    assert_clean(result)
    assert alive == len(SERVICES)
