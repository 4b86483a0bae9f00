from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from deploy.local import stack as devstack

pytestmark = pytest.mark.system

StartService = Callable[..., devstack.Proc]


@pytest.fixture
def start_service(infra: dict[str, str], run_dir: Path) -> Iterator[StartService]:
    """Start a service as its own process (waits for /readyz); stopped at the end of the test."""
    started: list[devstack.Proc] = []

    def start(name: str, *, instance: str = "", env: dict[str, str] | None = None,
              wait: bool = True) -> devstack.Proc:
        proc = devstack.start_service(name, run_dir, infra, instance=instance, extra_env=env)
        started.append(proc)
        if wait:
            devstack.wait_ready(proc, timeout=90)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def mongo(mongo_uri: str) -> Iterator[MongoClient]:  # type: ignore[type-arg]
    client: MongoClient = MongoClient(mongo_uri, tz_aware=True)  # type: ignore[type-arg]
    yield client
    client.close()
