"""The composition root shared by every service: settings -> logging -> MongoDB -> topics ->
broker and consumer -> outbox relay -> health endpoint -> periodic ticks; then a graceful
shutdown on SIGTERM/SIGINT that lets the in-flight message finish (or leaves it uncommitted).

A service provides a ``wire(runtime) -> Routes`` function (its topic -> handler table) and may
add index setup and ticks; nothing else about running differs between services.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from contracts.auth import AccessTokenClaims
from services.runtime import dialect
from services.runtime.broker import (
    ConsumerLag,
    ReplyTopics,
    connection,
    group_lag,
    make_broker,
    provision_topics,
)
from services.runtime.consumer import Consumer, Inbound, Routes
from services.runtime.http import HealthServer
from services.runtime.logs import configure_logging, get_logger
from services.runtime.mongo import Doc, OutboxRelay, UnitOfWork, connect
from services.runtime.settings import ServiceSettings, settings_problems
from services.runtime.tokens import verify_access_token
from services.runtime.tracing import exports, service_tracer, traced, tracer_provider

log = get_logger("schoolcard.service")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Tick:
    """A periodic job (absence detection, bonus expiry, delivery retries)."""

    every_s: float
    run: Callable[[], Awaitable[None]]
    name: str


@dataclass
class Runtime:
    service: str
    settings: ServiceSettings
    client: AsyncMongoClient[Doc]
    uow: UnitOfWork
    broker: KafkaBroker
    clock: Clock = system_clock
    ticks: list[Tick] = field(default_factory=list)

    @property
    def db(self):  # type: ignore[no-untyped-def]
        return self.uow.db

    @property
    def group_id(self) -> str:
        return self.settings.group_id or f"schoolcard-{self.service}"

    async def lag(self, topic: str) -> int:
        """How many records of ``topic`` this service's consumer group has still to commit
        (all instances together): a clock-driven job that judges from consumed data waits
        while it is behind."""
        return await group_lag(connection(self.settings.infra), self.group_id, topic)

    def claims(self, msg: Inbound[Any]) -> AccessTokenClaims:
        """The verified access token of an app command (raises TokenError with a code). Who
        may do what is checked by ``usecase.Caller.authorize`` (a handler's ``uc.authorize``)."""
        return verify_access_token(msg.authorization, self.settings.infra.verification_keys(),
                                   audience=self.service,
                                   now=self.clock().timestamp())

    def transaction(self, msg: Inbound[Any] | None = None, *, inbox: bool = True):  # type: ignore[no-untyped-def]
        """A unit of work for ``msg``: its id is the inbox key, its envelope the cause of
        everything emitted, the runtime clock gives ``tx.now``."""
        return self.uow.transaction(
            inbox_id=msg.inbox_id if (msg is not None and inbox) else None,
            cause=msg.envelope if msg is not None else None, now=self.clock())


Wire = Callable[[Runtime], Awaitable[Routes]]


class Service:
    def __init__(self, name: str, settings: ServiceSettings, wire: Wire, *,
                 clock: Clock = system_clock, tracing: TracerProvider | None = None) -> None:
        """``tracing``: where the service's spans go (default: ``SCHOOLCARD_OTEL_EXPORTER``;
        with ``none`` the handlers run without spans of their own, ``tracing.traced``)."""
        self.name = name
        self.settings = settings
        self.wire = wire
        self.clock = clock
        self.tracing = tracing or tracer_provider(name, settings.infra.otel_exporter,
                                                  settings.infra.otel_endpoint)
        self.handler_spans = tracing is not None or exports(settings.infra.otel_exporter)
        self.instance_id = (settings.instance_id or
                            f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self.http_port: int | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def readiness(self) -> dict[str, bool]:
        async def mongo_ok() -> bool:
            try:
                await asyncio.wait_for(self.runtime.client.admin.command("ping"), 2)
                return True
            except Exception:
                return False

        async def kafka_ok() -> bool:
            try:
                return bool(await self.runtime.broker.ping(timeout=2))
            except Exception:
                return False

        mongo, kafka = await asyncio.gather(mongo_ok(), kafka_ok())
        return {"mongo": mongo, "kafka": kafka}

    def liveness(self) -> dict[str, bool]:
        """What must keep running for the service to do its work: the consumer's task, which
        must not be stuck on a batch (``Consumer.liveness``: no progress for
        ``<SERVICE>_LIVENESS_STALL_S``), the outbox relay and the periodic jobs. That the
        event loop answers at all is shown by /healthz answering."""
        return {**self.consumer.liveness(self.settings.liveness_stall_s),
                **{task.get_name(): not task.done() for task in self._tasks}}

    async def _measure_lag(self) -> None:
        try:
            await self.consumer_lag.update()
        except (KafkaError, OSError, TimeoutError) as exc:  # the next tick asks again
            log.warning("consumer lag not measured", error=type(exc).__name__)

    async def start(self) -> None:
        s = self.settings
        infra = s.infra
        dialect.use(infra.mongo_dialect)
        client = connect(infra.mongo_uri)
        broker = make_broker(self.name, infra, graceful_timeout=s.shutdown_grace_s,
                             tracing=self.tracing)
        relay_holder: list[OutboxRelay] = []
        uow = UnitOfWork(client, s.mongo_db or f"schoolcard_{self.name}", self.name,
                         self.instance_id, on_commit=lambda: relay_holder[0].notify(),
                         snapshot_reads=infra.mongo_snapshot_reads,
                         reply_max_bytes=s.reply_max_bytes,
                         crash_after_commit=infra.failpoint_crash_after_commit)
        self.runtime = Runtime(self.name, s, client, uow, broker, clock=self.clock)
        await uow.ensure_indexes()
        if infra.provision_topics:
            await provision_topics(infra)
        routes = traced(await self.wire(self.runtime),
                        service_tracer(self.tracing) if self.handler_spans else None)
        self.consumer = Consumer(broker, self.name, routes,
                                 group_id=self.runtime.group_id,
                                 max_attempts=s.max_attempts,
                                 backoff_s=s.retry_backoff_ms / 1000,
                                 backoff_max_s=s.retry_backoff_max_ms / 1000,
                                 conflict_retries=s.conflict_retries,
                                 reply_topics=ReplyTopics(connection(infra)),
                                 fetch_max_wait_ms=infra.kafka_fetch_max_wait_ms,
                                 batch_max=s.consumer_batch_max,
                                 partition_concurrency=s.partition_concurrency(),
                                 batch_timeout_ms=s.consumer_batch_timeout_ms,
                                 batch_scope=uow.batch,
                                 integrator_keys=infra.integrator_key_table)

        async def publish(topic: str, key: str, value: bytes,
                          headers: dict[str, str]) -> Awaitable[object]:
            return await broker.publish(value, topic, key=key.encode(), headers=headers,
                                        no_confirm=True)

        async def broker_up() -> bool:
            return bool(await broker.ping(timeout=2))

        self.relay = OutboxRelay(uow, publish, batch=s.outbox_batch,
                                 idle_s=s.outbox_idle_ms / 1000, takeover_s=s.outbox_takeover_s,
                                 delete_published=s.outbox_delete_published,
                                 carries_secrets=s.outbox_carries_secrets,
                                 max_attempts=s.outbox_max_attempts,
                                 publish_timeout_s=s.outbox_publish_timeout_s,
                                 retry_base_s=s.outbox_retry_base_ms / 1000,
                                 broker_up=broker_up)
        relay_holder.append(self.relay)
        subscriber = self.consumer.subscriber
        self.consumer_lag = ConsumerLag(self.name, lambda: subscriber.consumer,
                                        connection(infra), self.runtime.group_id)
        await broker.start()
        self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))
        ticks = list(self.runtime.ticks)
        if s.consumer_lag_interval_s > 0:
            ticks.append(Tick(every_s=s.consumer_lag_interval_s, run=self._measure_lag,
                              name="consumer-lag"))
        for tick in ticks:
            self._tasks.append(asyncio.create_task(self._every(tick), name=tick.name))
        self.health = HealthServer(s.http_host, s.http_port, self.readiness, self.liveness)
        self.http_port = await self.health.start()
        log.info("service started", instance=self.instance_id, http_port=self.http_port,
                 topics=self.consumer.topics)

    async def _every(self, tick: Tick) -> None:
        while True:
            try:
                await tick.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tick failed", tick=tick.name)
            await asyncio.sleep(tick.every_s)

    async def stop(self) -> None:
        log.info("service stopping")
        self.consumer.stopping = True
        # Stop consuming first (waits up to shutdown_grace_s for the message in hand), then
        # flush the outbox while the producer still works, then close the broker.
        await self.consumer.subscriber.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.relay.stop()
        with contextlib.suppress(KafkaError, OSError):
            await self.consumer_lag.close()
        await self.runtime.broker.stop()
        await self.health.stop()
        await self.runtime.client.close()
        log.info("service stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        await self._stop.wait()
        await self.stop()


def main(name: str, settings_factory: type[ServiceSettings], wire: Wire) -> None:
    """Entry point of ``python -m services.<name>``. Invalid settings end the process with
    one line per problem, named by its environment variable (exit status 1)."""
    try:
        settings = settings_factory()
    except ValidationError as exc:
        raise SystemExit(f"{name} cannot start: {settings_problems(exc, settings_factory)}"
                         ) from None
    configure_logging(name, level=settings.infra.log_level, json=settings.infra.log_json)
    asyncio.run(Service(name, settings, wire).serve())
