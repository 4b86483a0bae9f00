"""The consumption policy, written once for every service.

FastStream's ack policies are unsafe for money (ACK_FIRST is at most once; ACK and
REJECT_ON_ERROR commit past a failed message; NACK_ON_ERROR loops forever on a poison message;
see FastStream issues #2618, #2999/#3000). So every service has ONE subscriber per consumer
group with ``AckPolicy.MANUAL`` and a decoder that hands us the raw bytes, and this module
decides, per record:

1. envelope or payload invalid (not JSON, schema violation, unknown type, wrong topic)
   -> dead-letter record with the original bytes and the reason, then commit; a reader that
   fails in any other way (a bug: it would fail again) -> dead-letter ``processing_failed``;
2. a type this service does not handle -> commit (consumers ignore what they do not need);
   a type the catalog marks ``signed`` (money-creating and identity-changing integrator
   messages) whose signature does not prove that the topic's integrator published this very
   record (missing, malformed, unknown key, another integrator's key, wrong signature) ->
   dead-letter ``unauthenticated``, commit: nothing of it is applied (``contracts.signing``);
   a request whose ``ce_replyto`` is not a reply topic the catalog allows (or a client's reply
   topic that does not exist) -> dead-letter ``reply_topic_not_allowed``, commit: its answer
   could never be published, and must not wait in the outbox;
3. handler raises ``Rejected`` (bad input found by the domain) -> dead-letter, commit;
4. handler raises an infrastructure error (database or broker unreachable) -> retry with
   capped backoff until it works or the service stops (the partition waits, nothing skipped);
5. the handler's save lost a write conflict (another instance changed the same aggregate) ->
   rerun it with fresh state after a short random pause, up to ``conflict_retries`` times,
   before it counts as a failure;
6. any other exception -> bounded retries with backoff, then dead-letter with the error;
7. success -> commit.

The offset is committed only after the handler's transaction committed (or the dead-letter
record was acknowledged by the broker). A message interrupted by shutdown is never committed,
so the next owner of the partition reads it again; the inbox makes that harmless.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from typing_extensions import TypeVar

from contracts import catalog
from contracts.envelope import (
    HEADER_AUTHORIZATION,
    HEADER_TYPE,
    ContractError,
    ContractModel,
    Envelope,
    decode,
    headers_to_dict,
)
from contracts.redaction import mask_payload
from contracts.signing import KeyTable, Unauthenticated
from services.runtime import metrics
from services.runtime.logs import get_logger
from services.runtime.mongo import INFRA_ERRORS, AlreadyProcessed, is_conflict

log = get_logger("schoolcard.consumer")


class Rejected(Exception):
    """A permanent, input-caused failure: the message goes to the dead-letter topic."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


M = TypeVar("M", default=Any)  # a bare ``Inbound`` is ``Inbound[Any]``


@dataclass(frozen=True)
class Inbound(Generic[M]):
    """A validated message as handlers see it (``Inbound[wire.TopUp]``: its message is a
    TopUp)."""

    message: M
    envelope: Envelope
    topic: str
    partition: int
    offset: int
    key: str | None
    authorization: str | None

    @property
    def inbox_id(self) -> str:
        return self.envelope.id


Handler = Callable[[Inbound[Any]], Awaitable[None]]
Routes = Mapping[type[ContractModel], Handler]
BatchScope = Callable[[list[str]], AbstractAsyncContextManager[None]]
"""Opens one transaction that the units of work of a batch's messages join (their inbox ids
given, to find the duplicates in one read): ``UnitOfWork.batch``."""
Work = tuple[ConsumerRecord, Handler, Inbound[Any]]  # type: ignore[type-arg]


class Progress:
    """When the consumer's loop last moved, for /healthz: a fetch handed it a batch, an
    attempt of a message ended (handled, refused, failed, retried after an outage), a batch
    finished. A consumer that holds a batch and has not moved for ``stall_s`` is stuck (a
    handler awaiting what never comes: a lost future, a lock never released) and only a
    restart frees its partitions; a consumer holding no batch is idle, never stuck, however
    long nothing comes to read. ``clock``: monotonic seconds (a fake one in tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.in_hand = 0  # batches being applied (one; several only through tests)
        self.moved_at = clock()

    def moved(self) -> None:
        self.moved_at = self.clock()

    def begin(self) -> None:
        self.in_hand += 1
        self.moved()

    def end(self) -> None:
        self.in_hand -= 1
        self.moved()

    def stalled(self, stall_s: float) -> bool:
        """Whether a batch is in hand and nothing moved for more than ``stall_s`` seconds."""
        return self.in_hand > 0 and self.clock() - self.moved_at > stall_s


class _Abandon(Exception):
    """A message of a batch failed: the batch's transaction is rolled back."""


class ReplyCheck(Protocol):
    async def problem(self, name: str) -> str | None: ...


class _AnyReplyTopic:
    """For consumers built without a broker to ask (unit tests): the catalog's rule only."""

    async def problem(self, name: str) -> str | None:
        return catalog.reply_topic_problem(name)


def _raw_decoder(msg: Any) -> Any:
    return msg.body


def _lenient(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    """The record with every header value valid UTF-8 (a broken one replaced), as FastStream's
    parser decodes them strictly: one broken header must be dead-lettered, not fail the batch."""
    headers = record.headers or ()
    clean = [(k, (v or b"").decode(errors="replace").encode()) for k, v in headers]
    return record if clean == list(headers) else replace(record, headers=clean)


async def _lenient_parser(records: tuple[ConsumerRecord[Any, Any], ...],
                          original: Callable[..., Awaitable[Any]]) -> Any:
    message = await original(tuple(_lenient(r) for r in records))
    message.raw_message = records  # the policy reads and dead-letters the original bytes
    return message


class Consumer:
    """One consumer group of a service: the topics, the routing table and the policy."""

    def __init__(self, broker: KafkaBroker, service: str, routes: Routes, *,
                 group_id: str, topics: list[str] | None = None, max_attempts: int = 5,
                 backoff_s: float = 0.1, backoff_max_s: float = 5.0,
                 conflict_retries: int = 30, reply_topics: ReplyCheck | None = None,
                 fetch_max_wait_ms: int = 500, batch_max: int = 1,
                 batch_timeout_ms: int = 100, batch_scope: BatchScope | None = None,
                 partition_concurrency: int = 1,
                 integrator_keys: KeyTable | None = None,
                 progress: Progress | None = None) -> None:
        self.broker = broker
        self.progress = progress or Progress()
        self.service = service
        self.routes = dict(routes)
        self.group_id = group_id
        self.dead_letter_topic = catalog.dead_letter_topic(service)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.conflict_retries = conflict_retries
        self.reply_topics = reply_topics or _AnyReplyTopic()
        self.integrator_keys = integrator_keys or KeyTable()
        self.stopping = False
        self.batch_scope = batch_scope if batch_max > 1 else None
        self.partition_concurrency = partition_concurrency
        self.partitions_at_once = asyncio.Semaphore(partition_concurrency)
        self.topics = topics or sorted({catalog.topic_for(m).name for m in self.routes})
        self.subscriber = broker.subscriber(
            *self.topics,
            group_id=group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            batch=True,
            max_records=batch_max,
            batch_timeout_ms=batch_timeout_ms,
            parser=_lenient_parser,
            decoder=_raw_decoder,
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=fetch_max_wait_ms,
            title=f"{service}-consumer",
        )
        self.subscriber(self._on_batch)
        for signer, types in self.unverifiable().items():
            log.error("no key of this integrator: every such message will be dead-lettered "
                      "unauthenticated (set SCHOOLCARD_INTEGRATOR_KEYS)", integrator=signer,
                      types=types)

    def unverifiable(self) -> dict[str, list[str]]:
        """The signed types this consumer handles whose integrator has no key in its table,
        by integrator: what it can only refuse."""
        missing: dict[str, list[str]] = {}
        for model in self.routes:
            for topic in self.topics:
                signer = catalog.required_signer(topic, model.TYPE)
                if signer is not None and signer not in self.integrator_keys.integrators:
                    missing.setdefault(signer, []).append(model.__name__)
        return missing

    def liveness(self, stall_s: float) -> dict[str, bool]:
        """``consumer``: FastStream's consume task still runs (a consumer whose task ended
        never reads again; FastStream restarts a task that raised). ``consumer_progress``:
        it is not stuck — partitions assigned, a batch in hand and no progress for
        ``stall_s`` (``Progress``)."""
        subscriber = self.subscriber
        consumer = subscriber.consumer
        consuming = bool(subscriber.running and consumer is not None
                         and any(not task.done() for task in subscriber.tasks))
        assigned = consumer is not None and bool(consumer.assignment())
        return {"consumer": consuming,
                "consumer_progress": not (assigned and self.progress.stalled(stall_s))}

    async def _on_batch(self, body: Any, msg: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[Any, Any], ...] = msg.raw_message  # type: ignore[assignment]
        if await self.process_batch(records):
            await msg.ack()
        else:  # stopping mid-batch: rewind, so nothing is committed past what was not done
            await msg.nack()

    async def process(self, record: ConsumerRecord[Any, Any]) -> bool:
        """Handle one record; True when its offset may be committed."""
        return await self.process_batch([record])

    async def process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> bool:
        """Handle the records of a batch (several partitions, each in order); True when their
        offsets may be committed. What cannot be read or answered is dead-lettered first. With
        ``partition_concurrency`` 1 the rest runs in one transaction when a batch scope is set
        (else one by one); above 1, per partition — that many partitions at the same time,
        each in its own transaction — so a message retried in one partition does not hold up
        the others."""
        self.progress.begin()
        try:
            return await self._process_batch(records)
        finally:
            self.progress.end()

    async def _process_batch(self, records: Sequence[ConsumerRecord[Any, Any]]) -> bool:
        work: list[Work] = []
        partitions: dict[tuple[str, int], list[Work]] = {}
        for record in records:
            prepared = await self._prepare(record)
            if prepared is False:
                return False
            if prepared is not True:
                work.append(prepared)
                partitions.setdefault((record.topic, record.partition), []).append(prepared)
        if self.partition_concurrency == 1 or len(partitions) <= 1:
            return await self._run(work)

        async def one_partition(work: list[Work]) -> bool:
            async with self.partitions_at_once:
                return await self._run(work)

        done = await asyncio.gather(*(one_partition(w) for w in partitions.values()))
        return all(done)

    async def _run(self, work: list[Work]) -> bool:
        """Apply ``work`` in order, each message exactly once. A batch whose message fails is
        rolled back and split: the messages before the failing one are applied again as a
        batch, the failing one alone under the single-message policy (retried, or
        dead-lettered), the rest as a new batch."""
        while work:
            if self.batch_scope is None or len(work) == 1:
                for item in work:
                    if not await self._handle(*item):
                        return False
                return True
            failed = await self._try_batch(work)
            if failed is None:
                return True
            if failed and not await self._run(work[:failed]):
                return False
            if not await self._handle(*work[failed]):
                return False
            work = work[failed + 1:]
        return True

    async def _try_batch(self, work: list[Work]) -> int | None:
        """Run every message of ``work`` in one transaction: None when it committed, else the
        index of the first message that failed (0 when the commit itself failed)."""
        assert self.batch_scope is not None
        started = time.perf_counter()
        failed = 0
        duplicates: set[int] = set()
        try:
            async with self.batch_scope([inbound.inbox_id for _, _, inbound in work]):
                for i, (_, handler, inbound) in enumerate(work):
                    self.progress.moved()  # the message before it ended
                    try:
                        await handler(inbound)
                    except AlreadyProcessed:  # refused before it wrote anything
                        duplicates.add(i)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        failed = i
                        raise _Abandon from exc
        except _Abandon as abandon:
            metrics.RETRIES.labels(self.service, "batch_split").inc()
            log.info("batch rolled back; splitting it", size=len(work), failed_at=failed,
                     error=type(abandon.__cause__).__name__)
            return failed
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the commit: a write conflict, an outage, a duplicate
            metrics.RETRIES.labels(self.service, "batch_split").inc()
            log.info("batch commit failed; applying it one by one", size=len(work),
                     error=type(exc).__name__)
            return 0
        per_message = (time.perf_counter() - started) / len(work)
        for i, (record, _, inbound) in enumerate(work):
            kind = inbound.envelope.type
            if i in duplicates:
                metrics.HANDLED.labels(self.service, kind, "duplicate").inc()
                log.info("duplicate ignored", event_id=inbound.envelope.id, type=kind,
                         topic=record.topic, partition=record.partition, offset=record.offset)
                continue
            metrics.HANDLED.labels(self.service, kind, "ok").inc()
            metrics.HANDLER_SECONDS.labels(self.service, kind).observe(per_message)
        metrics.BATCH_SIZE.labels(self.service).observe(len(work))
        return None

    async def _prepare(self, record: ConsumerRecord[Any, Any]) -> Work | bool:
        """The record decoded and routed, or True when it was settled here (dead-lettered,
        or ignored), or False when the service stops first."""
        headers = headers_to_dict(record.headers or [])
        try:
            envelope = Envelope.from_headers(headers)
            allowed = catalog.topic(record.topic).type_names
            message = decode(envelope, record.value, allowed)
        except ContractError as exc:
            await self.dead_letter(record, exc.code, exc.reason, attempts=0)
            return True
        except Exception as exc:  # a reader bug: reading again would fail again, skip nothing
            log.error("record could not be read; dead-lettering", topic=record.topic,
                      partition=record.partition, offset=record.offset,
                      error=type(exc).__name__, exc_info=True)
            metrics.HANDLED.labels(self.service, "unreadable", "failed").inc()
            await self.dead_letter(record, "processing_failed",
                                   f"the record could not be read: {type(exc).__name__}",
                                   attempts=0)
            return True
        handler = self.routes.get(type(message))
        if handler is None:
            metrics.HANDLED.labels(self.service, envelope.type, "ignored").inc()
            return True
        signer = catalog.required_signer(record.topic, envelope.type)
        if signer is not None:
            try:
                self.integrator_keys.verify(signer, record.topic, headers, record.value)
            except Unauthenticated as exc:
                metrics.HANDLED.labels(self.service, envelope.type, "rejected").inc()
                await self.dead_letter(record, "unauthenticated", exc.reason, attempts=0)
                return True
        if envelope.reply_to is not None:
            private = catalog.reply_topic_problem(
                envelope.reply_to, private=getattr(message, "PRIVATE_REPLY", False))
            problem = private if private else await self._reply_problem(envelope.reply_to)
            if problem is None:  # stopping: the next owner of the partition reads it again
                return False
            if problem:
                metrics.HANDLED.labels(self.service, envelope.type, "rejected").inc()
                await self.dead_letter(record, "reply_topic_not_allowed", problem, attempts=0)
                return True
        inbound = Inbound(message, envelope, record.topic, record.partition, record.offset,
                          record.key.decode(errors="replace") if record.key else None,
                          headers.get(HEADER_AUTHORIZATION))
        return record, handler, inbound

    async def _reply_problem(self, reply_to: str) -> str | None:
        """Why the reply topic a request names is refused ("" when it is fine). Asking the
        broker whether a client's reply topic exists is retried like any outage; None when
        the service stops first."""
        delay = self.backoff_s
        while not self.stopping:
            self.progress.moved()
            try:
                return await self.reply_topics.problem(reply_to) or ""
            except (*INFRA_ERRORS, KafkaError, OSError) as exc:
                metrics.RETRIES.labels(self.service, "infrastructure").inc()
                log.warning("cannot check the reply topic; retrying", error=type(exc).__name__,
                            retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)
        return None

    async def _handle(self, record: ConsumerRecord[Any, Any], handler: Handler,
                      inbound: Inbound) -> bool:
        bound = log.bind(event_id=inbound.envelope.id, type=inbound.envelope.type,
                         correlation_id=inbound.envelope.correlation_id,
                         topic=record.topic, partition=record.partition, offset=record.offset)
        attempts = conflicts = 0
        delay = self.backoff_s
        while True:
            self.progress.moved()  # every attempt (an outage's retries too) is progress
            started = time.perf_counter()
            try:
                await handler(inbound)
            except AlreadyProcessed:
                metrics.HANDLED.labels(self.service, inbound.envelope.type, "duplicate").inc()
                bound.info("duplicate ignored")
                return True
            except Rejected as exc:
                metrics.HANDLED.labels(self.service, inbound.envelope.type, "rejected").inc()
                await self.dead_letter(record, exc.code, exc.reason, attempts=attempts + 1)
                return True
            except asyncio.CancelledError:
                bound.warning("handler interrupted; offset not committed")
                raise
            except (*INFRA_ERRORS, KafkaError) as exc:
                metrics.RETRIES.labels(self.service, "infrastructure").inc()
                bound.warning("infrastructure unavailable; retrying", error=type(exc).__name__,
                              retry_in_s=round(delay, 2))
            except Exception as exc:
                if is_conflict(exc) and conflicts < self.conflict_retries:
                    conflicts += 1
                    metrics.RETRIES.labels(self.service, "conflict").inc()
                    if self.stopping:
                        return False
                    await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2 ** conflicts)))
                    continue
                attempts += 1
                metrics.RETRIES.labels(self.service, "handler").inc()
                if attempts >= self.max_attempts:
                    bound.error("handler failed; dead-lettering", error=type(exc).__name__,
                                attempts=attempts, exc_info=True)
                    await self.dead_letter(record, "processing_failed",
                                           f"{type(exc).__name__}: {str(exc)[:500]}",
                                           attempts=attempts)
                    metrics.HANDLED.labels(self.service, inbound.envelope.type, "failed").inc()
                    return True
                bound.warning("handler failed; retrying", error=type(exc).__name__,
                              attempt=attempts, retry_in_s=round(delay, 2))
            else:
                metrics.HANDLED.labels(self.service, inbound.envelope.type, "ok").inc()
                metrics.HANDLER_SECONDS.labels(self.service, inbound.envelope.type).observe(
                    time.perf_counter() - started)
                return True
            if self.stopping:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def dead_letter(self, record: ConsumerRecord[Any, Any], code: str, reason: str, *,
                          attempts: int) -> None:
        """Publish the original key, value and headers with the reason to the service's
        dead-letter topic and wait for the broker's acknowledgement. The copy keeps no
        secret: the bearer token is dropped, and the secret fields of a JSON value (passwords,
        codes, tokens of the type its ``ce_type`` names) are masked, listed in ``dlq_masked``;
        a value that is not JSON carries no fields and is copied as it is."""
        headers = headers_to_dict(record.headers or [])
        headers.pop(HEADER_AUTHORIZATION, None)
        headers.pop(catalog.DLQ_MASKED, None)
        value, masked = mask_payload(headers.get(HEADER_TYPE), record.value)
        if masked:
            headers[catalog.DLQ_MASKED] = ",".join(masked)
        headers.update({
            catalog.DLQ_CODE: code,
            catalog.DLQ_REASON: reason[:2000],
            catalog.DLQ_TOPIC: record.topic,
            catalog.DLQ_PARTITION: str(record.partition),
            catalog.DLQ_OFFSET: str(record.offset),
            catalog.DLQ_GROUP: self.group_id,
            catalog.DLQ_FAILED_AT: datetime.now(UTC).isoformat(),
            catalog.DLQ_ATTEMPTS: str(attempts),
        })
        await self.broker.publish(value or b"", self.dead_letter_topic, key=record.key,
                                  headers=headers)
        metrics.DEAD_LETTERED.labels(self.service, code).inc()
        log.warning("dead-lettered", reason_code=code, reason=reason[:300],
                    source_topic=record.topic,
                    partition=record.partition, offset=record.offset)
