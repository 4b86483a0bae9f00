"""Session fixtures: a private Kafka broker and MongoDB-protocol server on free ports, under a
per-run directory, so tests never collide with a running stack or with each other."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local import stack as devstack
from services.runtime import dialect
from tests.support import DevSigners


@pytest.fixture(scope="session")
def run_dir() -> Path:
    """Per-run directory under .run/tests (kept, so the logs of a failed run can be read)."""
    base = Path(os.environ.get("RUN_DIR", devstack.ROOT / ".run")) / "tests"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))


@pytest.fixture(scope="session")
def infra(run_dir: Path) -> Iterator[dict[str, str]]:
    """Broker + database for the whole test session; the env every service process needs."""
    kafka = devstack.start_broker(run_dir)
    mongo = devstack.start_mongo(run_dir)
    env = devstack.infra_env(kafka.port, mongo.port, run_dir)
    # the test integrators sign with the dev keys the services were given
    DevSigners.use(env["SCHOOLCARD_KAFKA_BOOTSTRAP"], devstack.integrator_signers(run_dir))
    env["SCHOOLCARD_LOG_LEVEL"] = os.environ.get("SCHOOLCARD_LOG_LEVEL", "INFO")
    # The stores called in-process (fixtures, direct reads) query the dev server too.
    dialect.use(env["SCHOOLCARD_MONGO_DIALECT"])
    try:
        yield env
    finally:
        mongo.stop()
        kafka.stop()


@pytest.fixture(scope="session")
def bootstrap(infra: dict[str, str]) -> str:
    return infra["SCHOOLCARD_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def mongo_uri(infra: dict[str, str]) -> str:
    return infra["SCHOOLCARD_MONGO_URI"]
