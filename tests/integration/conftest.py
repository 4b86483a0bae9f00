"""Run a service in-process (same event loop as the test) against the session's real broker
and MongoDB-protocol server, with an injectable clock. Faster than a subprocess and lets a
test move time; system tests (tests/system) run services as processes instead."""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.runtime.service import Clock, Service, system_clock
from services.runtime.settings import InfraSettings

pytestmark = pytest.mark.integration


def infra_settings(env: dict[str, str]) -> InfraSettings:
    return InfraSettings(
        kafka_bootstrap=env["SCHOOLCARD_KAFKA_BOOTSTRAP"],
        mongo_uri=env["SCHOOLCARD_MONGO_URI"],
        auth_public_key=env["SCHOOLCARD_AUTH_PUBLIC_KEY"],
        integrator_keys=json.loads(env["SCHOOLCARD_INTEGRATOR_KEYS"]),
        topic_partitions=int(env["SCHOOLCARD_TOPIC_PARTITIONS"]),
        kafka_fetch_max_wait_ms=int(env["SCHOOLCARD_KAFKA_FETCH_MAX_WAIT_MS"]),
        kafka_idempotence=env["SCHOOLCARD_KAFKA_IDEMPOTENCE"] == "true",
        mongo_dialect=env["SCHOOLCARD_MONGO_DIALECT"],
        mongo_snapshot_reads=False,
        log_json=False,
    )


@pytest.fixture(scope="session")
def service_runner(infra: dict[str, str]) -> Callable[..., Any]:
    """``async with service_runner("wallet", clock=clock, **settings) as svc: ...``
    (``tracing=``: a TracerProvider that receives the service's spans)."""

    @asynccontextmanager
    async def run(name: str, *, clock: Clock = system_clock, tracing: Any = None,
                  **overrides: Any) -> AsyncIterator[Service]:
        app = importlib.import_module(f"services.{name}.app")
        settings_cls = importlib.import_module(f"services.{name}.settings").Settings
        settings = settings_cls(infra=infra_settings(infra), retry_backoff_ms=20, **overrides)
        service = Service(name, settings, app.wire, clock=clock, tracing=tracing)
        await service.start()
        try:
            yield service
        finally:
            await service.stop()

    return run
