"""Test helpers: publish contract messages like an integrator does (plain aiokafka), read a
topic back, and wait on conditions with a deadline (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.catalog import CLIENT_REPLIES_CONFIG, app, topic_for
from contracts.envelope import ContractModel, Envelope, encode, headers_to_dict
from contracts.signing import Signers, SigningError, SigningKey
from deploy.local.stack import DEV_FETCH_MAX_WAIT_MS

T = TypeVar("T")


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def chip_uid(rng: random.Random | None = None) -> str:
    """A random 7-byte chip UID in hex whose first digit is a letter (A, B, E or F): never all
    digits, so never shaped like a bank card number, which the contracts refuse."""
    return f"{(rng or random).getrandbits(56) | 0xA << 52:014X}"


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 30,
                     interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class DevSigners:
    """The integrators' dev signing keys of each stack this process started, by its broker's
    bootstrap (``tests/conftest.py`` and the fault suite's worlds register them): what an
    ``Integrator`` signs with unless given others."""

    by_bootstrap: ClassVar[dict[str, Signers]] = {}

    @classmethod
    def use(cls, bootstrap: str, signers: Signers) -> None:
        cls.by_bootstrap[bootstrap] = signers

    @classmethod
    def of(cls, bootstrap: str) -> Signers:
        return cls.by_bootstrap.get(bootstrap) or Signers()


UNSIGNED = Signers()
"""``Integrator(..., signers=UNSIGNED)`` or ``publish(..., signers=UNSIGNED)``: what anyone on
the broker can publish, with no integrator's key."""


class Integrator:
    """Publishes contract messages with CloudEvents headers, as an outside system would; the
    types that must be signed (``contracts.signing``) are signed with ``signers`` (default: the
    session's dev keys of every integrator)."""

    def __init__(self, bootstrap: str, source: str = "integrator:test", *,
                 signers: Signers | None = None) -> None:
        self.bootstrap = bootstrap
        self.source = source
        self.signers = signers
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def __aenter__(self) -> Integrator:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def publish(self, message: ContractModel, key: str, *, topic: str | None = None,
                      envelope: Envelope | None = None, headers: dict[str, str] | None = None,
                      reply_to: str | None = None, signers: Signers | None = None,
                      sign_as: SigningKey | None = None) -> Envelope:
        """``signers`` overrides the integrator's keys for this record (``UNSIGNED``: none);
        ``sign_as`` signs it with that key whatever the catalog asks (another integrator's)."""
        env = envelope or Envelope.new(message, source=self.source, subject=key,
                                       reply_to=reply_to)
        topic = topic or topic_for(type(message)).name
        value = encode(message)
        all_headers = {**env.to_headers(), **(headers or {})}
        if sign_as is not None:
            all_headers.update(sign_as.headers(topic, env.type, env.id, value))
        else:
            keys = signers or self.signers or DevSigners.of(self.bootstrap)
            all_headers.update(keys.headers(topic, all_headers, value)
                               if keys is not UNSIGNED else {})
        await self.producer.send_and_wait(
            topic, value, key=key.encode(),
            headers=[(k, v.encode()) for k, v in all_headers.items()])
        return env

    async def publish_raw(self, topic: str, value: bytes, key: str, headers: dict[str, str], *,
                          signed: bool = False) -> None:
        """The bytes and headers as given; ``signed``: plus the integrator's signature when the
        type named in the headers needs one and the headers allow it (a record whose envelope
        is broken on purpose is sent as it is)."""
        if signed:
            keys = self.signers or DevSigners.of(self.bootstrap)
            with contextlib.suppress(SigningError):
                headers = {**headers, **keys.headers(topic, headers, value)}
        await self.producer.send_and_wait(topic, value, key=key.encode(),
                                          headers=[(k, v.encode()) for k, v in headers.items()])


@dataclass
class Record:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int

    @property
    def type(self) -> str:
        return self.headers.get("ce_type", "")

    def json(self) -> Any:
        return json.loads(self.value)


class TopicReader:
    """Reads a topic from the beginning without a consumer group (no commits, no joins)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest",
                                         fetch_max_wait_ms=DEV_FETCH_MAX_WAIT_MS)
        self.records: list[Record] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        partitions = await eventually(
            lambda: _async(self.consumer.partitions_for_topic(self.topic)),
            what=f"metadata of {self.topic}")
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> list[Record]:
        batch = await self.consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for r in records:
                self.records.append(Record(r.topic, r.key.decode() if r.key else None,
                                           r.value or b"", headers_to_dict(r.headers or []),
                                           r.partition, r.offset))
        return self.records

    async def read_to_end(self, timeout: float = 30) -> list[Record]:
        """Every record written before the call (up to the end offsets now): for checking
        that something is absent."""
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))

        async def caught_up() -> bool:
            await self.poll()
            positions = [await self.consumer.position(tp) for tp in ends]
            return all(p >= end for p, end in zip(positions, ends.values(), strict=True))

        await eventually(caught_up, timeout=timeout, what=f"{self.topic} read to its end")
        return self.records

    async def wait_for(self, predicate: Callable[[Record], bool], *, count: int = 1,
                       timeout: float = 30) -> list[Record]:
        async def check() -> list[Record] | None:
            await self.poll()
            found = [r for r in self.records if predicate(r)]
            return found if len(found) >= count else None

        return await eventually(check, timeout=timeout,
                                what=f"{count} matching record(s) on {self.topic}")


async def _async(value: T) -> T:
    return value


async def create_reply_topic(bootstrap: str, client_id: str) -> str:
    """A client's own reply topic, ``apps.replies.<client_id>.v1``, created as the catalog
    says (one hour of retention): what an app does before it logs in. ``client_id`` starts
    with its app's prefix (``catalog.App.client_prefix``) where the broker enforces ACLs."""
    name = f"apps.replies.{client_id}.v1"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                            topic_configs=CLIENT_REPLIES_CONFIG)])
    finally:
        await admin.close()
    return name


class Requester:
    """Sends app commands and queries (with an access token) and waits for the reply by
    correlation id — what a cabinet back end does. Replies come on its own reply topic
    (created on entry: logins and TOTP enrolment are answered nowhere else), or on
    ``reply_topic`` when given (``apps.replies.v1``, the shared one)."""

    def __init__(self, bootstrap: str, reply_topic: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.integrator = Integrator(bootstrap, source="app:test")
        self.reply_topic = reply_topic or ""
        self.replies: TopicReader | None = None

    async def __aenter__(self) -> Requester:
        if not self.reply_topic:
            # a partner app's instance: inside the prefix its Kafka user may create and read
            self.reply_topic = await create_reply_topic(
                self.bootstrap, app("partner").client_prefix + f"test-{uuid.uuid4().hex[:12]}")
        self.replies = TopicReader(self.bootstrap, self.reply_topic)
        await self.integrator.__aenter__()
        await self.replies.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.replies is not None:
            await self.replies.__aexit__()
        await self.integrator.__aexit__()

    async def send(self, message: ContractModel, key: str, *, token: str | None = None,
                   timeout: float = 30) -> Record:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        env = await self.integrator.publish(message, key, headers=headers,
                                            reply_to=self.reply_topic)
        assert self.replies is not None, "use the Requester as an async context manager"
        [reply] = await self.replies.wait_for(
            lambda r: r.headers.get("ce_correlationid") == env.correlation_id, timeout=timeout)
        return reply


class FakeClock:
    """An injectable clock for services run in-process: ``clock.advance(minutes=20)``."""

    def __init__(self, start: Any = None) -> None:
        from datetime import UTC, datetime

        self.now = start or datetime.now(UTC)

    def __call__(self) -> Any:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)


async def all_records(bootstrap: str) -> dict[str, str]:
    """Every record (value and headers) of every topic, as text per topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if not t.startswith("__")]
        partitions = [TopicPartition(t, p) for t in topics
                      for p in (consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        texts: dict[str, list[str]] = {t: [] for t in topics}

        async def drained() -> bool:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    headers = " ".join(f"{k}={(v or b'').decode(errors='replace')}"
                                       for k, v in (r.headers or []))
                    texts[tp.topic].append((r.value or b"").decode(errors="replace") + headers)
            for tp, end in ends.items():
                if await consumer.position(tp) < end:
                    return False
            return True

        await eventually(drained, timeout=60, interval=0, what="every topic read to its end")
        return {t: "\n".join(v) for t, v in texts.items()}
    finally:
        await consumer.stop()
