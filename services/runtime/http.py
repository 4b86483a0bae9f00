"""A small HTTP endpoint per service: /metrics (Prometheus), /healthz (alive: the event loop
answers — this handler runs on it — and the service's background work is still running) and
/readyz (broker connected and MongoDB answering)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.runtime import metrics

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
LivenessCheck = Callable[[], dict[str, bool]]
"""What must still be running (the consumer, the outbox relay...): name -> running. Cheap and
synchronous: a blocked event loop already leaves /healthz unanswered."""


def _always_alive() -> dict[str, bool]:
    return {}


def _json(flag: str, checks: dict[str, bool]) -> tuple[int, bytes]:
    ok = all(checks.values())
    parts = "".join(f',"{k}":{str(v).lower()}' for k, v in checks.items())
    return (200 if ok else 503), f'{{"{flag}":{str(ok).lower()}{parts}}}'.encode()


class HealthApp:
    """A bare ASGI app: three routes do not justify a web framework."""

    def __init__(self, readiness: ReadinessCheck,
                 liveness: LivenessCheck = _always_alive) -> None:
        self.readiness = readiness
        self.liveness = liveness

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry)
        elif path == "/healthz":
            ctype = "application/json"
            status, body = _json("alive", self.liveness())
        elif path == "/readyz":
            ctype = "application/json"
            status, body = _json("ready", await self.readiness())
        else:
            status, ctype, body = 404, "text/plain", b"not found"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode())]})
        await send({"type": "http.response.body", "body": body})


class HealthServer:
    def __init__(self, host: str, port: int, readiness: ReadinessCheck,
                 liveness: LivenessCheck = _always_alive) -> None:
        config = uvicorn.Config(HealthApp(readiness, liveness), host=host, port=port,
                                log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        # The service owns SIGTERM/SIGINT (graceful stop, then this server); uvicorn would
        # otherwise capture them while it serves and shut /readyz down first.
        self.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                await self.task
            await asyncio.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task
