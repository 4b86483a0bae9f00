"""gateway's composition root: settings -> its reply topic -> the request/reply client and the
deliveries feed -> the HTTP API (FastAPI under uvicorn, with /metrics, /healthz, /readyz);
then a graceful stop on SIGTERM/SIGINT that fails the calls still waiting (503), ends the event
streams and lets the responses in progress go out.

Stateless: no database. Any number of instances run side by side, each with its own reply
topic; the rate limits are per instance (services/gateway/limits.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.gateway import routes, web
from services.gateway.kafka import DeliveryFeed, Requests, create_reply_topic
from services.gateway.limits import RateLimiter
from services.gateway.settings import Settings
from services.runtime import metrics
from services.runtime.kafka_security import kafka_connection
from services.runtime.logs import configure_logging, get_logger

log = get_logger("schoolcard.gateway")

REQUESTS = Counter("schoolcard_gateway_requests_total", "HTTP calls answered, by route and "
                   "status", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("schoolcard_gateway_request_seconds", "Time to answer an HTTP "
                            "call (an event stream: until its headers)", ["method", "route"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PENDING = Gauge("schoolcard_gateway_pending_replies", "Calls waiting for a service's reply")
RATE_LIMITED = Counter("schoolcard_gateway_rate_limited_total", "Calls refused by the "
                       "per-address rate limit, by kind", ["kind"])
STREAMS = Gauge("schoolcard_gateway_event_streams", "Open event streams (GET /v1/events)")


class Gateway:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        infra = settings.infra
        kafka = kafka_connection(infra.kafka_bootstrap, infra)
        self.kafka = kafka
        self.requests = Requests(kafka, settings.reply_topic,
                                 fetch_max_wait_ms=infra.kafka_fetch_max_wait_ms)
        self.feed = DeliveryFeed(kafka, queue_size=settings.sse_queue,
                                 fetch_max_wait_ms=infra.kafka_fetch_max_wait_ms)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst,
                                   max_clients=settings.rate_limit_clients)
        self.trusted = [ipaddress.ip_network(n, strict=False)
                        for n in settings.trusted_proxies]
        self.settled_at = 0.0
        self.http_port: int | None = None
        self.api = routes.build()
        self.api.state.gateway = self
        self._add_operations()
        web.mount(self.api, idle_timeout_s=settings.web_idle_timeout_s)

    # --- what the routes use -----------------------------------------------------------------

    def client_address(self, peer: str, forwarded_for: str) -> str:
        return routes.client_address(peer, forwarded_for, self.trusted)

    def metrics_rate_limited(self, kind: str) -> None:
        RATE_LIMITED.labels(kind).inc()

    def metrics_stream(self, delta: int) -> None:
        STREAMS.inc(delta)

    # --- operations endpoints and per-call metrics -------------------------------------------

    def _add_operations(self) -> None:
        api = self.api

        @api.get("/metrics", include_in_schema=False)
        async def prometheus() -> Response:
            PENDING.set(len(self.requests.pending))
            return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

        @api.get("/healthz", include_in_schema=False)
        async def healthz() -> JSONResponse:
            return JSONResponse({"status": "alive"})

        @api.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            checks = await self.readiness()
            ok = all(checks.values())
            return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

        @api.middleware("http")
        async def measure(request: Request, call_next: Any) -> Response:
            started = time.perf_counter()
            response: Response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(request.method, path, str(response.status_code)).inc()
            REQUEST_SECONDS.labels(request.method, path).observe(
                time.perf_counter() - started)
            return response

    async def readiness(self) -> dict[str, bool]:
        return {"kafka": await self.requests.broker_up(),
                "replies": self.requests.running(),
                "deliveries": self.feed.running(),
                "reply_topic_settled": time.monotonic() >= self.settled_at}

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the reply topic (when new, ready only after ``reply_topic_settle_s``), then
        start reading replies and deliveries from their ends."""
        created = await create_reply_topic(self.kafka, self.settings.reply_topic)
        if created:
            self.settled_at = time.monotonic() + self.settings.reply_topic_settle_s
        await self.requests.start()
        await self.feed.start()
        log.info("gateway started", instance=self.settings.instance_id,
                 reply_topic=self.settings.reply_topic, created=created)

    async def settled(self) -> None:
        """Wait until the services can have seen the reply topic (tests and ``serve``)."""
        await asyncio.sleep(max(0.0, self.settled_at - time.monotonic()))

    async def stop(self) -> None:
        """Fail the calls still waiting (503) and end the event streams; the responses go
        out before the HTTP server closes."""
        log.info("gateway stopping", pending=len(self.requests.pending))
        await self.feed.stop()
        await self.requests.stop()

    async def serve(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        config = uvicorn.Config(self.api, host=self.settings.http_host,
                                port=self.settings.http_port, log_config=None,
                                access_log=False, lifespan="off",
                                timeout_graceful_shutdown=int(self.settings.shutdown_grace_s)
                                or None)
        server = uvicorn.Server(config)
        # The gateway owns SIGTERM/SIGINT: fail the waiting calls first, then let uvicorn
        # finish the responses in progress (it would otherwise wait for them to time out).
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.02)
        self.http_port = int(server.servers[0].sockets[0].getsockname()[1])
        log.info("gateway listening", http_port=self.http_port)
        await stop.wait()
        await self.stop()
        server.should_exit = True
        await task
        log.info("gateway stopped")


def run() -> None:
    settings = Settings()
    configure_logging("gateway", level=settings.infra.log_level, json=settings.infra.log_json)
    asyncio.run(Gateway(settings).serve())
