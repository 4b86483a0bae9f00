"""A service run as its own process with ``SCHOOLCARD_OTEL_EXPORTER=otlp`` and a collector
endpoint where nothing listens: it starts, is alive and ready, does its work (the spans fail to
export in the background), and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from deploy.local import stack as devstack
from tests.integration.test_access_gate import local, new_card, school
from tests.support import Integrator, TopicReader

pytestmark = pytest.mark.system


async def test_a_service_exporting_spans_to_an_absent_otlp_collector_works_and_stops(
        start_service, bootstrap: str) -> None:
    nowhere = devstack.free_port()
    access = start_service("access", env={
        "SCHOOLCARD_OTEL_EXPORTER": "otlp",
        "SCHOOLCARD_OTEL_ENDPOINT": f"http://127.0.0.1:{nowhere}/v1/traces"})
    async with httpx.AsyncClient() as http:
        healthz = await http.get(f"http://127.0.0.1:{access.port}/healthz", timeout=5)
    assert healthz.status_code == 200, healthz.text

    card = new_card(school())
    async with Integrator(bootstrap) as pub, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow:
        await pub.publish(card.model_copy(update={"issued_at": local("06:00")}), card.contract)
        await allow.wait_for(lambda r: r.key == card.card_uid, timeout=60)

    os.kill(access.pid, signal.SIGTERM)
    stopping = time.monotonic()
    devstack.wait_for(lambda: not access.alive(), timeout=30, what="access to stop")
    log = Path(access.log).read_text(errors="replace")
    assert "service stopped" in log, log[-3000:]
    assert time.monotonic() - stopping < 30
