"""The gateway's Kafka side: requests to the services answered on this instance's own reply
topic, and the live feed of ``notify.deliveries.v1``.

Replies: at start the instance creates ``apps.replies.gw-<instance id>.v1`` (the catalog's
``CLIENT_REPLIES_CONFIG``: one hour of retention) and reads it alone, by assignment from its
end (no consumer group: nothing to join or commit). Each request gets a fresh message id and
correlation id; one consumer task resolves the waiting future whose correlation id a reply
carries. A reply nobody waits for (a request whose caller gave up, or one sent before a
restart) is dropped: an answer reaches only the call that asked. At stop every waiting call
fails with ``GatewayStopping`` (503), never with someone else's answer.

Live feed: every instance reads every partition of ``notify.deliveries.v1`` (delivery
statuses) and ``notify.in-app.v1`` (in-app messages with their text) from their ends without
a group (so each instance sees every record) and hands each record to the streams open for
its guardian account.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts.catalog import CLIENT_REPLIES_CONFIG, reply_topic_problem, topic_for
from contracts.envelope import (
    HEADER_AUTHORIZATION,
    HEADER_CORRELATION,
    ContractError,
    ContractModel,
    Envelope,
    Reply,
    decode,
    encode,
    headers_to_dict,
)
from contracts.notify import InAppMessage, NotificationDelivered
from services.runtime.kafka_security import KafkaConnection
from services.runtime.logs import get_logger

log = get_logger("schoolcard.gateway.kafka")

SOURCE = "gateway"
DELIVERIES = topic_for(NotificationDelivered).name
IN_APP = topic_for(InAppMessage).name
FEED_TYPES = (NotificationDelivered.TYPE, InAppMessage.TYPE)

Live = NotificationDelivered | InAppMessage
"""What an event stream carries: a delivery status, or an in-app message with its text."""


class GatewayStopping(Exception):
    """The instance stopped while the call waited: the caller may retry (503)."""


class ReplyTimeout(Exception):
    """No reply within the deadline (504)."""


class BadReply(Exception):
    """The reply could not be read as a contract (502)."""


async def _partitions(consumer: AIOKafkaConsumer, topic: str,
                      timeout: float = 10.0) -> list[TopicPartition]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await consumer.topics()  # refreshes metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"no partition metadata for {topic}")
        await asyncio.sleep(0.1)


async def create_reply_topic(kafka: KafkaConnection, name: str) -> bool:
    """Create this instance's reply topic; False when it already existed (a restart under the
    same instance id)."""
    problem = reply_topic_problem(name, private=True)
    if problem is not None:
        raise ValueError(problem)
    admin = AIOKafkaAdminClient(**kafka.options(), client_id="schoolcard-gateway")
    await admin.start()
    try:
        if name in set(await admin.list_topics()):
            return False
        try:
            await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1,
                                                topic_configs=CLIENT_REPLIES_CONFIG)])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        await admin.close()


@dataclass
class Requests:
    """Request/reply over Kafka for one gateway instance (see the module docstring)."""

    kafka: KafkaConnection
    reply_topic: str
    fetch_max_wait_ms: int = 500
    pending: dict[str, asyncio.Future[ContractModel]] = field(default_factory=dict)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # aiokafka clients belong to the running loop: made here, not in the constructor
        self.producer = AIOKafkaProducer(**self.kafka.options(), acks="all",
                                         enable_idempotence=False,
                                         client_id="schoolcard-gateway")
        self.consumer = AIOKafkaConsumer(**self.kafka.options(), enable_auto_commit=False,
                                         auto_offset_reset="latest",
                                         fetch_max_wait_ms=self.fetch_max_wait_ms,
                                         client_id="schoolcard-gateway-replies")
        await self.producer.start()
        await self.consumer.start()
        tps = await _partitions(self.consumer, self.reply_topic)
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end now, before any request can be answered
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._read(), name="gateway-replies")

    def running(self) -> bool:
        return self.task is not None and not self.task.done() and not self.stopping

    async def broker_up(self) -> bool:
        if self.task is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.producer.client.force_metadata_update(),
                                               2))
        except Exception:
            return False

    async def request(self, message: ContractModel, key: str, *, token: str | None,
                      timeout: float) -> ContractModel:
        """Publish ``message`` on its catalog topic (``ce_replyto`` = this instance's topic,
        the bearer token in ``authorization``) and return the reply carrying its
        correlation id."""
        if self.stopping:
            raise GatewayStopping("the gateway is stopping")
        env = Envelope.new(message, source=SOURCE, subject=key, reply_to=self.reply_topic,
                           message_id=str(uuid.uuid4()))
        headers = env.to_headers()
        if token:
            headers[HEADER_AUTHORIZATION] = f"Bearer {token}"
        future: asyncio.Future[ContractModel] = asyncio.get_running_loop().create_future()
        self.pending[env.correlation_id] = future
        try:
            await self.producer.send_and_wait(
                topic_for(type(message)).name, encode(message), key=key.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()])
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ReplyTimeout(f"no reply to {message.TYPE} within {timeout:g} s") from None
        finally:
            self.pending.pop(env.correlation_id, None)

    async def _read(self) -> None:
        await _read_forever(self.consumer, self._resolve, "replies")

    def _resolve(self, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = headers_to_dict(record.headers or [])
        future = self.pending.get(headers.get(HEADER_CORRELATION, ""))
        if future is None or future.done():
            return  # not ours any more: the caller gave up, or it predates a restart
        try:
            env = Envelope.from_headers(headers)
            reply = decode(env, record.value)
            if not isinstance(reply, Reply):
                raise ContractError("unexpected_type", f"{env.type} is not a reply")
        except ContractError as exc:
            future.set_exception(BadReply(f"{exc.code}: {exc.reason}"))
            return
        future.set_result(reply)

    async def stop(self) -> None:
        """Fail the calls still waiting (503), then close the clients."""
        self.stopping = True
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(GatewayStopping("the gateway stopped before the reply "
                                                     "came; retry with the same "
                                                     "Idempotency-Key"))
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            await self.consumer.stop()
            await self.producer.stop()


def _end(queue: asyncio.Queue[Live | str], reason: str) -> None:
    """End a stream: its last item is the reason (a string), room made for it if needed."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(reason)


@dataclass
class DeliveryFeed:
    """Fans ``notify.deliveries.v1`` and ``notify.in-app.v1`` out to the event streams open
    per guardian account."""

    kafka: KafkaConnection
    queue_size: int = 256
    fetch_max_wait_ms: int = 500
    streams: dict[str, set[asyncio.Queue[Live | str]]] = field(
        default_factory=lambda: defaultdict(set))

    def __post_init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(**self.kafka.options(), enable_auto_commit=False,
                                         auto_offset_reset="latest",
                                         fetch_max_wait_ms=self.fetch_max_wait_ms,
                                         client_id="schoolcard-gateway-deliveries")
        await self.consumer.start()
        tps = [*await _partitions(self.consumer, DELIVERIES),
               *await _partitions(self.consumer, IN_APP)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        self.task = asyncio.create_task(self._read(), name="gateway-deliveries")

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def subscribe(self, account_id: str) -> asyncio.Queue[Live | str]:
        queue: asyncio.Queue[Live | str] = asyncio.Queue(self.queue_size)
        self.streams[account_id].add(queue)
        return queue

    def unsubscribe(self, account_id: str, queue: asyncio.Queue[Live | str]) -> None:
        queues = self.streams.get(account_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.streams[account_id]

    @property
    def open_streams(self) -> int:
        return sum(len(q) for q in self.streams.values())

    async def _read(self) -> None:
        await _read_forever(self.consumer, self._fan_out, "deliveries")

    def _fan_out(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if not self.streams:
            return
        try:
            env = Envelope.from_headers(headers_to_dict(record.headers or []))
            delivered = decode(env, record.value, allowed=FEED_TYPES)
        except ContractError:
            return  # not for the apps to see; notify's own consumers judge its records
        assert isinstance(delivered, Live)
        if delivered.account_id is None:
            return
        for queue in list(self.streams.get(delivered.account_id, ())):
            if queue.full():  # a stalled client: tell it to reload, do not hold the others
                _end(queue, "overflow")
                self.unsubscribe(delivered.account_id, queue)
            else:
                queue.put_nowait(delivered)

    async def stop(self) -> None:
        for queues in list(self.streams.values()):
            for queue in list(queues):
                _end(queue, "gateway_stopping")
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            await self.consumer.stop()


async def _read_forever(consumer: AIOKafkaConsumer,
                        handle: Callable[[ConsumerRecord[bytes, bytes]], None], what: str) -> None:
    """Hand every record ``consumer`` fetches to ``handle``; a failed fetch is logged and
    retried a second later (the broker's outage must not end the gateway's reading)."""
    while True:
        try:
            batch = await consumer.getmany(timeout_ms=500)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(f"reading {what} failed; retrying")
            await asyncio.sleep(1)
            continue
        for records in batch.values():
            for record in records:
                handle(record)
