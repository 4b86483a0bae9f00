"""/healthz and /readyz of the health endpoint as an ASGI app: alive only while everything it
is told must run is running; ready only while the broker and the database answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.runtime.http import HealthApp

pytestmark = pytest.mark.unit


async def get(app: HealthApp, path: str) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path}, None, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


async def ready() -> dict[str, bool]:
    return {"mongo": True, "kafka": False}


async def test_healthz_answers_503_naming_what_stopped_running() -> None:
    running = {"consumer": True, "outbox-relay": True}
    app = HealthApp(ready, lambda: dict(running))
    assert await get(app, "/healthz") == (200, {"alive": True, "consumer": True,
                                                "outbox-relay": True})
    running["consumer"] = False
    assert await get(app, "/healthz") == (503, {"alive": False, "consumer": False,
                                                "outbox-relay": True})


async def test_readyz_answers_503_while_a_dependency_is_down() -> None:
    assert await get(HealthApp(ready), "/readyz") == (503, {"ready": False, "mongo": True,
                                                           "kafka": False})
