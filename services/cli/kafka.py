"""The CLI's Kafka side (plain aiokafka, no consumer group of its own): publish with
CloudEvents headers, read topics, request/reply over ``apps.replies.v1``, dead letters, lag.
Every client is opened from a ``KafkaConnection`` (bootstrap plus the ``SCHOOLCARD_KAFKA_*``
security settings, ``services.cli.config``).

Reads assign partitions explicitly and seek to offsets fetched up front, so nothing is
committed and no group join (seconds on the dev broker) is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from contracts.catalog import APP_REPLIES, DLQ_MASKED, DLQ_PARTITION, DLQ_TOPIC
from contracts.envelope import (
    HEADER_AUTHORIZATION,
    HEADER_CORRELATION,
    ContractModel,
    Envelope,
    encode,
    headers_to_dict,
)
from contracts.signing import Signers
from services.runtime.kafka_security import KafkaConnection

DLQ_PREFIX = "dlq_"


class KafkaProblem(Exception):
    """A broker-side condition the operator must know about (missing topic, no reply)."""


@dataclass
class Raw:
    """One consumed record with its headers decoded to text."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]


def _raw(r: ConsumerRecord[bytes, bytes]) -> Raw:
    key = r.key.decode("utf-8", errors="replace") if isinstance(r.key, bytes) else r.key
    return Raw(r.topic, r.partition, r.offset, r.timestamp, key, r.value,
               headers_to_dict(r.headers or []))


async def existing_topics(kafka: KafkaConnection) -> set[str]:
    admin = AIOKafkaAdminClient(**kafka.options(), client_id="schoolcard-cli")
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def require_topic(kafka: KafkaConnection, topic: str, hint: str = "") -> None:
    """Fail clearly instead of letting a metadata request auto-create a mistyped topic."""
    if topic not in await existing_topics(kafka):
        raise KafkaProblem(f"topic {topic} does not exist on {kafka.bootstrap}"
                           + (f" ({hint})" if hint else ""))


def _producer(kafka: KafkaConnection) -> AIOKafkaProducer:
    return AIOKafkaProducer(**kafka.options(), acks="all", enable_idempotence=False,
                            client_id="schoolcard-cli")


async def publish_raw(kafka: KafkaConnection,
                      items: Iterable[tuple[str, str | None, bytes | None, dict[str, str],
                                            int | None]]
                      ) -> list[Sent]:
    """Publish (topic, key, value, headers, partition) records, each acknowledged by all
    in-sync replicas before the next."""
    producer = _producer(kafka)
    await producer.start()
    sent: list[Sent] = []
    try:
        for topic, key, value, headers, partition in items:
            md = await producer.send_and_wait(
                topic, value, key=key.encode() if key is not None else None,
                partition=partition, headers=[(k, v.encode()) for k, v in headers.items()])
            sent.append(Sent(md.topic, md.partition, md.offset, key, headers))
    finally:
        await producer.stop()
    return sent


def envelope_headers(message: ContractModel, key: str, *, source: str,
                     reply_to: str | None = None, token: str | None = None
                     ) -> tuple[Envelope, dict[str, str]]:
    env = Envelope.new(message, source=source, subject=key, reply_to=reply_to)
    headers = env.to_headers()
    if token:
        headers[HEADER_AUTHORIZATION] = f"Bearer {token}"
    return env, headers


async def publish(kafka: KafkaConnection, topic: str, message: ContractModel, key: str, *,
                  source: str, signers: Signers | None = None) -> Sent:
    """Publish one message; ``signers`` sign it when its type must be signed."""
    await require_topic(kafka, topic, "services create the catalog topics when they start; "
                        "is the stack running?")
    _, headers = envelope_headers(message, key, source=source)
    value = encode(message)
    if signers is not None:
        headers.update(signers.headers(topic, headers, value))
    [sent] = await publish_raw(kafka, [(topic, key, value, headers, None)])
    return sent


async def _assign(consumer: AIOKafkaConsumer, kafka: KafkaConnection,
                  topic: str) -> list[TopicPartition]:
    await require_topic(kafka, topic)
    partitions: set[int] | None = None
    deadline = time.monotonic() + 10
    while not partitions and time.monotonic() < deadline:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.1)
    if not partitions:
        raise KafkaProblem(f"no partition metadata for {topic}")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return tps


def _consumer(kafka: KafkaConnection) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**kafka.options(), enable_auto_commit=False,
                            auto_offset_reset="earliest", client_id="schoolcard-cli")


async def read(kafka: KafkaConnection, topic: str, *, from_beginning: bool = False,
               follow: bool = True, limit: int | None = None,
               idle_timeout: float | None = None) -> AsyncGenerator[Raw, None]:
    """Records of ``topic``: from the beginning or only new ones; with ``follow=False`` stop at
    the end offsets seen at start; stop after ``limit`` records or ``idle_timeout`` seconds
    without a record."""
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        tps = await _assign(consumer, kafka, topic)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps) if from_beginning else ends
        for tp in tps:
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        if not follow and not pending:
            return
        count = 0
        last = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            records = sorted((r for rs in batch.values() for r in rs),
                             key=lambda r: (r.timestamp or 0, r.partition, r.offset))
            for r in records:
                tp = TopicPartition(r.topic, r.partition)
                if not follow and r.offset >= ends[tp]:
                    continue
                yield _raw(r)
                count += 1
                if limit is not None and count >= limit:
                    return
            if records:
                last = time.monotonic()
            if not follow:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending:
                    return
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
    finally:
        await consumer.stop()


async def read_all(kafka: KafkaConnection, topic: str) -> list[Raw]:
    return [r async for r in read(kafka, topic, from_beginning=True, follow=False)]


async def request(kafka: KafkaConnection, message: ContractModel, topic: str, key: str, *,
                  token: str, source: str, reply_topic: str = APP_REPLIES,
                  timeout: float = 15) -> Raw:
    """Publish a query/command with ``ce_replyto`` and the access token; return the reply with
    the same correlation id. Listening starts before publishing, at explicit end offsets."""
    await require_topic(kafka, topic, "is the stack running?")
    consumer = _consumer(kafka)
    await consumer.start()
    try:
        tps = await _assign(consumer, kafka, reply_topic)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, ends[tp])
        env, headers = envelope_headers(message, key, source=source, reply_to=reply_topic,
                                        token=token)
        await publish_raw(kafka, [(topic, key, encode(message), headers, None)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for rs in batch.values():
                for r in rs:
                    raw = _raw(r)
                    if raw.headers.get(HEADER_CORRELATION) == env.correlation_id:
                        return raw
        raise KafkaProblem(f"no reply to {message.TYPE} on {reply_topic} within {timeout:g} s "
                           f"(correlation id {env.correlation_id}); is the owning service "
                           "running and does it answer this query?")
    finally:
        await consumer.stop()


def replay_item(record: Raw) -> tuple[str, str | None, bytes | None, dict[str, str], int | None]:
    """What replaying a dead letter publishes: the original value, key and headers (dlq_*
    removed) to the source topic; the source partition only when there is no key to route by.
    """
    source = record.headers.get(DLQ_TOPIC)
    if not source:
        raise KafkaProblem(f"record {record.partition}:{record.offset} has no {DLQ_TOPIC} "
                           "header: not a dead letter")
    if record.headers.get(DLQ_MASKED):
        # Replaying "***" as a password or code would count as a failed attempt of its owner.
        raise KafkaProblem(f"record {record.partition}:{record.offset} had its secrets masked "
                           f"({record.headers[DLQ_MASKED]}): not replayable; its sender must "
                           "send it again")
    headers = {k: v for k, v in record.headers.items() if not k.startswith(DLQ_PREFIX)}
    partition = None
    if record.key is None and record.headers.get(DLQ_PARTITION, "").isdigit():
        partition = int(record.headers[DLQ_PARTITION])
    return source, record.key, record.value, headers, partition


@dataclass
class LagRow:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(self.end - self.committed, 0)


@dataclass
class GroupInfo:
    group: str
    state: str
    members: int
    rows: list[LagRow] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(r.lag for r in self.rows)


async def lag(kafka: KafkaConnection, group: str | None = None) -> list[GroupInfo]:
    """Committed offsets of every consumer group against the end offsets of the partitions
    they committed on. Offsets are asked for explicit partitions (every partition of every
    topic): the dev broker cannot answer the 'all partitions' form of OffsetFetch."""
    admin = AIOKafkaAdminClient(**kafka.options(), client_id="schoolcard-cli")
    consumer = _consumer(kafka)
    await admin.start()
    await consumer.start()
    try:
        groups = sorted(g for g, _ in await admin.list_consumer_groups())
        if group is not None:
            if group not in groups:
                raise KafkaProblem(f"no consumer group {group!r} (known: "
                                   f"{', '.join(groups) or 'none'})")
            groups = [group]
        topics = sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        tps: list[TopicPartition] = []
        if topics:
            for desc in await admin.describe_topics(topics):
                tps += [TopicPartition(desc["topic"], p["partition"])
                        for p in desc.get("partitions", [])]
        ends = await consumer.end_offsets(tps) if tps else {}
        states: dict[str, tuple[str, int]] = {}
        if groups:
            for response in await admin.describe_consumer_groups(groups):
                for g in response.groups:
                    states[g[1]] = (g[2], len(g[5]))
        out = []
        for g in groups:
            state, members = states.get(g, ("?", 0))
            info = GroupInfo(g, state, members)
            offsets = await admin.list_consumer_group_offsets(g, partitions=tps) if tps else {}
            for tp, meta in sorted(offsets.items(), key=lambda kv: (kv[0].topic,
                                                                    kv[0].partition)):
                if meta.offset >= 0:
                    info.rows.append(LagRow(g, tp.topic, tp.partition, meta.offset,
                                            ends.get(tp, meta.offset)))
            out.append(info)
        return out
    finally:
        await consumer.stop()
        await admin.close()
