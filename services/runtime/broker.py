"""The Kafka edge: a FastStream broker with Prometheus and OpenTelemetry middleware, and topic
provisioning from the catalog."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry.sdk.trace import TracerProvider

from contracts.catalog import APP_REPLIES, TOPICS, Topic, reply_topic_problem
from services.runtime import metrics
from services.runtime.kafka_security import KafkaConnection, kafka_connection
from services.runtime.logs import get_logger
from services.runtime.settings import InfraSettings
from services.runtime.tracing import tracer_provider

log = get_logger("schoolcard.broker")


def connection(infra: InfraSettings) -> KafkaConnection:
    """The service's broker connection, with its credentials (``SCHOOLCARD_KAFKA_*``)."""
    return kafka_connection(infra.kafka_bootstrap, infra)


def make_broker(service: str, infra: InfraSettings, *, graceful_timeout: float = 15.0,
                tracing: TracerProvider | None = None) -> KafkaBroker:
    """Producer settings: acks=all; idempotence as ``SCHOOLCARD_KAFKA_IDEMPOTENCE`` says (on,
    except on the development broker, which cannot grant producer ids; duplicates are
    absorbed by idempotent consumers anyway).
    Spans go to ``tracing`` (default: the exporter ``SCHOOLCARD_OTEL_EXPORTER`` names)."""
    kafka = connection(infra)
    if tracing is None:
        tracing = tracer_provider(service, infra.otel_exporter, infra.otel_endpoint)
    return KafkaBroker(
        kafka.bootstrap,
        security=kafka.security,
        client_id=f"schoolcard-{service}",
        acks="all",
        enable_idempotence=infra.kafka_idempotence,
        linger_ms=infra.kafka_linger_ms,
        request_timeout_ms=15_000,
        graceful_timeout=graceful_timeout,
        middlewares=[
            KafkaPrometheusMiddleware(registry=metrics.registry, app_name=service,
                                      metrics_prefix="schoolcard_kafka"),
            KafkaTelemetryMiddleware(tracer_provider=tracing),
        ],
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,  # one line per message is noise; failures are logged by us
    )


async def provision_topics(infra: InfraSettings, topics: tuple[Topic, ...] = TOPICS) -> list[str]:
    """Create the missing topics of the catalog; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(**connection(infra).options(),
                                client_id="schoolcard-provisioner")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return []
        new = [NewTopic(t.name, infra.topic_partitions or t.partitions, infra.replication_factor,
                        topic_configs=t.config()) for t in missing]
        # another service may create them at the same moment
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
        log.info("topics provisioned", count=len(missing))
        return [t.name for t in missing]
    finally:
        await admin.close()


async def group_lag(kafka: KafkaConnection, group: str, *topics: str) -> int:
    """Records of ``topics`` that consumer ``group`` has not committed yet, over all partitions
    (whichever instance owns them); a partition without a commit counts from its first
    record. Partitions are passed explicitly: the dev broker cannot answer the "all
    partitions" form of the offsets request."""
    admin = AIOKafkaAdminClient(**kafka.options(), client_id=f"{group}-lag")
    consumer = AIOKafkaConsumer(**kafka.options(), client_id=f"{group}-lag",
                                enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for topic in topics
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return 0
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        behind = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            behind += max(0, ends[tp] - done)
        return behind
    finally:
        await consumer.stop()
        await admin.close()


class ConsumerLag:
    """``schoolcard_consumer_lag{service,topic,partition}``: the records of each partition this
    instance consumes that its group has not committed yet (end offset minus committed offset;
    a partition never committed counts from its first record). The assignment is the
    consumer's the subscriber holds, so the sum over a service's instances is its group's lag;
    a partition handed to another instance stops being reported here. One measure is one
    end-offsets request and one committed-offsets request for all the partitions (asked of an
    admin client kept open: the consumer's ``committed`` asks one partition per request, 30
    requests a measure for a service of 30 partitions), plus the first offsets of the
    partitions never committed."""

    def __init__(self, service: str, consumer: Callable[[], AIOKafkaConsumer | None],
                 kafka: KafkaConnection, group: str) -> None:
        self.service = service
        self.consumer = consumer
        self.kafka = kafka
        self.group = group
        self._admin: AIOKafkaAdminClient | None = None
        self._reported: set[TopicPartition] = set()

    async def _committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each of ``tps`` (None: never committed)."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(**self.kafka.options(), client_id=f"{self.group}-lag")
            await admin.start()
            self._admin = admin
        answer = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        committed: dict[TopicPartition, int | None] = {}
        for tp in tps:
            meta = answer.get(tp)
            committed[tp] = meta.offset if meta is not None and meta.offset >= 0 else None
        return committed

    async def update(self) -> dict[TopicPartition, int]:
        """Measure and export the lag of every assigned partition; returns it."""
        consumer = self.consumer()
        tps = sorted(consumer.assignment()) if consumer is not None else []
        lag: dict[TopicPartition, int] = {}
        if consumer is not None and tps:
            ends = await consumer.end_offsets(tps)
            committed = await self._committed(tps)
            never = [tp for tp, offset in committed.items() if offset is None]
            starts = await consumer.beginning_offsets(never) if never else {}
            for tp in tps:
                done = committed[tp]
                lag[tp] = max(0, ends[tp] - (starts[tp] if done is None else done))
        for tp in self._reported - lag.keys():
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.service, tp.topic, str(tp.partition))
        for tp, behind in lag.items():
            metrics.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(behind)
        self._reported = set(lag)
        return lag

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()


class ReplyTopics:
    """Where a request may ask for its answer: ``apps.replies.v1``, or a client's own
    ``apps.replies.<client-id>.v1`` that exists on the broker. A reply addressed anywhere else
    could never be published (a name the broker refuses, a topic production does not
    auto-create), so the consumer refuses such a request before any handler runs.

    The broker's topic list is read again when a request names a per-client topic not seen
    before (a client creates its topic and names it at once); a name found missing is
    refused without asking again for ``refresh_s``, so a flood of one made-up name costs one
    list per ``refresh_s`` (each made-up name also costs a dead letter, which is dearer).
    """

    def __init__(self, kafka: KafkaConnection, *, refresh_s: float = 5.0) -> None:
        self.kafka = kafka
        self.refresh_s = refresh_s
        self._known: set[str] = set()
        self._missing: dict[str, float] = {}

    async def _list_topics(self) -> set[str]:
        admin = AIOKafkaAdminClient(**self.kafka.options(), client_id="schoolcard-reply-topics")
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    async def problem(self, name: str) -> str | None:
        """Why replies may not go to ``name`` (None: they may). Raises KafkaError when the
        broker cannot be asked (the consumer retries like any outage)."""
        problem = reply_topic_problem(name)
        if problem is not None or name == APP_REPLIES or name in self._known:
            return problem
        now = time.monotonic()
        if now - self._missing.get(name, float("-inf")) >= self.refresh_s:
            self._known = await self._list_topics()
            if name in self._known:
                self._missing.pop(name, None)
                return None
            if len(self._missing) >= 10_000:
                self._missing = {n: t for n, t in self._missing.items()
                                 if now - t < self.refresh_s}
            self._missing[name] = now
        return f"reply topic {name} does not exist: create it before naming it in ce_replyto"
