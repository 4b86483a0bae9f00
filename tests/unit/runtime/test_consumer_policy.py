"""The consumption policy decides, per record, between handling, retrying and dead-lettering.
Checked here without a broker: records are built by hand and the dead-letter sink is a fake."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from pymongo.errors import AutoReconnect

from contracts.envelope import Envelope, encode
from contracts.integrations import CardIssued
from contracts.signing import KeyTable, SigningKey, generate_key_pair
from services.runtime.broker import ReplyTopics
from services.runtime.consumer import Consumer, Inbound, Rejected
from services.runtime.kafka_security import KafkaConnection
from services.runtime.mongo import AlreadyProcessed

pytestmark = pytest.mark.unit

TOPIC = "integrations.card-issuance.v1"
CARD = CardIssued(contract="40012345", card_uid="04A2B3C4D5E6F7", school_id="izh-school-42",
                  school_tz="Europe/Samara", student_id="stu-1", class_name="5Б",
                  birth_date=date(2014, 3, 8), issued_at=datetime(2026, 9, 1, tzinfo=UTC))


_private, _public = generate_key_pair()
CARD_ISSUER = SigningKey.from_pem("integrator:card-issuer", _private)
KEYS = KeyTable.parse({"integrator:card-issuer": _public})


def signed(headers: dict[str, str], value: bytes) -> dict[str, str]:
    """``headers`` with the card issuer's signature of the record (CardIssued must carry it)."""
    if not (headers.get("ce_id") and headers.get("ce_type")):
        return headers
    return {**headers, **CARD_ISSUER.headers(TOPIC, headers["ce_type"], headers["ce_id"], value)}


class RecordingConsumer(Consumer):
    def __init__(self, handler: Any, **kw: Any) -> None:
        kw.setdefault("integrator_keys", KEYS)
        super().__init__(KafkaBroker(), "test", {CardIssued: handler}, group_id="g",
                         backoff_s=0.001, backoff_max_s=0.002, **kw)
        self.dead: list[tuple[str, str]] = []

    async def dead_letter(self, record: Any, code: str, reason: str, *, attempts: int) -> None:
        self.dead.append((code, reason))


def record(value: bytes | None = None, headers: dict[str, str] | None = None) -> ConsumerRecord:
    hdrs = headers if headers is not None else Envelope.new(CARD, source="t").to_headers()
    value = encode(CARD) if value is None else value
    return ConsumerRecord(TOPIC, 0, 7, 0, 0, b"40012345", value, None, 0, 0,
                          [(k, v.encode()) for k, v in signed(hdrs, value).items()])


async def test_a_valid_record_reaches_its_handler_once_and_may_be_committed():
    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    consumer = RecordingConsumer(handler)
    assert await consumer.process(record()) is True
    assert [m.message for m in seen] == [CARD]
    assert consumer.dead == []


async def test_a_handler_rejection_is_dead_lettered_without_retrying():
    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        raise Rejected("unknown_contract", "no such contract")

    consumer = RecordingConsumer(handler)
    assert await consumer.process(record()) is True
    assert calls == 1
    assert consumer.dead == [("unknown_contract", "no such contract")]


async def test_a_failing_handler_is_retried_a_bounded_number_of_times_then_dead_lettered():
    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    consumer = RecordingConsumer(handler, max_attempts=3)
    assert await consumer.process(record()) is True
    assert calls == 3
    assert consumer.dead[0][0] == "processing_failed"
    assert "ValueError" in consumer.dead[0][1]


async def test_a_transient_failure_that_clears_is_handled_without_a_dead_letter():
    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("write conflict")

    consumer = RecordingConsumer(handler, max_attempts=5)
    assert await consumer.process(record()) is True
    assert calls == 3
    assert consumer.dead == []


async def test_an_unreachable_database_is_retried_past_the_attempt_bound_and_never_dead_lettered():
    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        if calls < 8:
            raise AutoReconnect("mongo down")

    consumer = RecordingConsumer(handler, max_attempts=2)
    assert await consumer.process(record()) is True
    assert calls == 8
    assert consumer.dead == []


async def test_an_outage_during_shutdown_leaves_the_record_uncommitted():
    async def handler(msg: Inbound) -> None:
        consumer.stopping = True
        raise AutoReconnect("mongo down")

    consumer = RecordingConsumer(handler)
    assert await consumer.process(record()) is False
    assert consumer.dead == []


async def test_an_interrupted_handler_propagates_cancellation_and_is_not_committed():
    started = asyncio.Event()

    async def handler(msg: Inbound) -> None:
        started.set()
        await asyncio.sleep(3600)

    consumer = RecordingConsumer(handler)
    task = asyncio.create_task(consumer.process(record()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer.dead == []


async def test_a_duplicate_is_acknowledged_without_a_dead_letter():
    async def handler(msg: Inbound) -> None:
        raise AlreadyProcessed(msg.inbox_id)

    consumer = RecordingConsumer(handler)
    assert await consumer.process(record()) is True
    assert consumer.dead == []


@pytest.mark.parametrize(("value", "headers", "code"), [
    (b"\xff\xfe", None, "not_json"),
    (b'{"contract": "1"}', None, "schema_violation"),
    (b"{}", {}, "missing_headers"),
    (b"{}", {"ce_id": "1", "ce_type": "schoolcard.nope.Thing", "ce_source": "x",
             "ce_time": "2026-09-01T00:00:00Z"}, "unknown_type"),
    (b"{}", {"ce_id": "1", "ce_type": "schoolcard.wallet.TopUpApplied", "ce_source": "x",
             "ce_time": "2026-09-01T00:00:00Z"}, "unexpected_type"),
])
async def test_undecodable_records_are_dead_lettered_with_their_code(value, headers, code):
    async def handler(msg: Inbound) -> None:
        raise AssertionError("must not be called")

    consumer = RecordingConsumer(handler)
    assert await consumer.process(record(value, headers)) is True
    assert [c for c, _ in consumer.dead] == [code]


async def test_a_record_the_reader_fails_on_unexpectedly_is_dead_lettered_not_skipped(
        monkeypatch: pytest.MonkeyPatch):
    def broken_reader(*args: Any) -> Any:
        raise OverflowError("date value out of range")

    async def handler(msg: Inbound) -> None:
        raise AssertionError("must not be called")

    monkeypatch.setattr("services.runtime.consumer.decode", broken_reader)
    consumer = RecordingConsumer(handler)
    assert await consumer.process(record()) is True
    assert consumer.dead == [("processing_failed", "the record could not be read: OverflowError")]


async def test_a_lost_write_race_is_rerun_with_fresh_state_without_using_up_attempts():
    from pymongo.errors import OperationFailure

    from services.runtime.mongo import ConcurrencyError

    races = [ConcurrencyError("wallet_accounts/40012345"),
             OperationFailure("WriteConflict: another transaction holds the database", 112)]
    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        if races:
            raise races.pop(0)

    consumer = RecordingConsumer(handler, max_attempts=1, conflict_retries=5)
    assert await consumer.process(record()) is True
    assert calls == 3 and consumer.dead == []


async def test_endless_write_conflicts_end_as_a_failure_after_the_conflict_budget():
    from services.runtime.mongo import ConcurrencyError

    calls = 0

    async def handler(msg: Inbound) -> None:
        nonlocal calls
        calls += 1
        raise ConcurrencyError("wallet_accounts/40012345")

    consumer = RecordingConsumer(handler, max_attempts=2, conflict_retries=3)
    assert await consumer.process(record()) is True
    assert calls == 3 + 2  # the conflict budget, then the ordinary bounded attempts
    assert [code for code, _ in consumer.dead] == ["processing_failed"]


def request(reply_to: str) -> ConsumerRecord:
    return record(headers=Envelope.new(CARD, source="t", reply_to=reply_to).to_headers())


@pytest.mark.parametrize("reply_to", [
    "no such topic!", "x" * 300, "wallet.events.v1", "apps.replies.v2", "apps.replies..v1",
])
async def test_a_request_naming_a_reply_topic_the_catalog_does_not_allow_is_never_handled(
        reply_to: str):
    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    consumer = RecordingConsumer(handler)
    assert await consumer.process(request(reply_to)) is True
    assert seen == []
    [(code, reason)] = consumer.dead
    assert code == "reply_topic_not_allowed"
    assert "apps.replies.v1" in reason and reply_to not in reason  # never echoes the name


def broker_topics(*names: str) -> ReplyTopics:
    """The runtime's reply-topic check with the broker's topic list replaced by ``names``."""
    topics = ReplyTopics(KafkaConnection("unused:9092"), refresh_s=3600)

    async def listed() -> set[str]:
        return set(names)

    topics._list_topics = listed  # type: ignore[method-assign]
    return topics


async def test_a_client_reply_topic_is_allowed_only_once_it_exists():
    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    consumer = RecordingConsumer(handler, reply_topics=broker_topics("apps.replies.cabinet-7.v1"))
    assert await consumer.process(request("apps.replies.cabinet-7.v1")) is True
    assert await consumer.process(request("apps.replies.v1")) is True
    assert await consumer.process(request("apps.replies.nobody.v1")) is True
    assert [m.envelope.reply_to for m in seen] == ["apps.replies.cabinet-7.v1", "apps.replies.v1"]
    assert [code for code, _ in consumer.dead] == ["reply_topic_not_allowed"]
    assert "does not exist" in consumer.dead[0][1]


async def test_a_reply_topic_created_after_the_last_listing_is_found_at_once_and_a_missing_one_is_not_asked_for_again():  # noqa: E501
    topics = ReplyTopics(KafkaConnection("unused:9092"), refresh_s=3600)
    on_broker = {"apps.replies.first.v1"}
    listings = 0

    async def listed() -> set[str]:
        nonlocal listings
        listings += 1
        return set(on_broker)

    topics._list_topics = listed  # type: ignore[method-assign]
    assert await topics.problem("apps.replies.first.v1") is None
    on_broker.add("apps.replies.second.v1")  # a client created its topic just now
    assert await topics.problem("apps.replies.second.v1") is None
    assert listings == 2
    for _ in range(50):  # a flood of one made-up name: one listing
        assert "does not exist" in (await topics.problem("apps.replies.made-up.v1") or "")
    assert listings == 3
    assert await topics.problem("apps.replies.first.v1") is None and listings == 3


async def test_a_reply_larger_than_the_limit_becomes_the_error_reply_too_large():
    from contracts.envelope import ErrorReply
    from contracts.wallet import StatementLine, StatementReply
    from services.runtime.mongo import Transaction

    cause = Envelope.new(CARD, source="t", reply_to="apps.replies.v1")
    tx = Transaction(session=None, db=None, source="wallet", cause=cause,  # type: ignore[arg-type]
                     now=datetime.now(UTC), reply_max_bytes=10_000)
    line = StatementLine(at=datetime.now(UTC), kind="sale", operation_id="s-1", amount=-100,
                         status="posted", description="till " * 10)
    tx.reply(StatementReply(contract="40012345", lines=[line] * 5))
    tx.reply(StatementReply(contract="40012345", lines=[line] * 500))
    small, large = (p.message for p in tx.outbox)
    assert isinstance(small, StatementReply) and len(small.lines) == 5
    assert isinstance(large, ErrorReply) and large.error is not None
    assert large.error.code == "reply_too_large"
    assert [p.topic for p in tx.outbox] == ["apps.replies.v1", "apps.replies.v1"]


# --- batches ---------------------------------------------------------------------------------

class FakeStore:
    """A store whose writes inside ``batch()`` become visible only when the batch commits."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.staged: list[str] | None = None
        self.commits = self.rollbacks = 0

    @asynccontextmanager
    async def batch(self, inbox_ids: list[str]) -> AsyncIterator[None]:
        self.staged = []
        try:
            yield
        except BaseException:
            self.rollbacks += 1
            raise
        else:
            self.committed += self.staged
            self.commits += 1
        finally:
            self.staged = None

    @asynccontextmanager
    async def unit(self, contract: str) -> AsyncIterator[None]:
        """A message's unit of work: joins the open batch, else is its own transaction."""
        if contract in self.committed or contract in (self.staged or []):
            raise AlreadyProcessed(contract)
        if self.staged is not None:
            self.staged.append(contract)
            yield
        else:
            yield
            self.committed.append(contract)


def card_records(n: int) -> list[ConsumerRecord]:
    out = []
    for i in range(n):
        card = CARD.model_copy(update={"contract": f"4001{i:04d}"})
        hdrs = signed(Envelope.new(card, source="t").to_headers(), encode(card))
        out.append(ConsumerRecord(TOPIC, i % 3, i, 0, 0, card.contract.encode(), encode(card),
                                  None, 0, 0, [(k, v.encode()) for k, v in hdrs.items()]))
    return out


def batching(handler: Any, store: FakeStore) -> RecordingConsumer:
    return RecordingConsumer(handler, batch_max=100, batch_scope=store.batch)


async def test_a_batch_is_applied_in_one_transaction_in_order() -> None:
    store = FakeStore()

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            pass

    records = card_records(6)
    assert await batching(handler, store).process_batch(records) is True
    assert store.committed == [r.key.decode() for r in records]
    assert (store.commits, store.rollbacks) == (1, 0)


async def test_a_message_refused_after_writing_is_dead_lettered_alone_and_the_rest_applied_once(
) -> None:
    """The refusal comes after the message wrote: rolled back with its batch, the messages
    before it are applied again as a batch, it is dead-lettered alone, the rest follow."""
    store = FakeStore()
    records = card_records(6)
    poison = records[2].key.decode()

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            if msg.message.contract == poison:
                raise Rejected("bad_card", "refused after writing")

    consumer = batching(handler, store)
    assert await consumer.process_batch(records) is True
    assert store.committed == [r.key.decode() for r in records if r.key.decode() != poison]
    assert consumer.dead == [("bad_card", "refused after writing")]
    assert store.rollbacks == 1


async def test_a_message_failing_once_in_a_batch_is_retried_alone_and_nothing_is_doubled(
) -> None:
    store = FakeStore()
    records = card_records(5)
    flaky = records[3].key.decode()
    failures = [RuntimeError("once")]

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            if msg.message.contract == flaky and failures:
                raise failures.pop()

    consumer = batching(handler, store)
    assert await consumer.process_batch(records) is True
    assert sorted(store.committed) == sorted(r.key.decode() for r in records)
    assert len(store.committed) == len(set(store.committed)) == 5
    assert consumer.dead == []


async def test_a_duplicate_in_a_batch_is_skipped_without_rolling_the_batch_back() -> None:
    store = FakeStore()
    records = card_records(4)
    store.committed.append(records[1].key.decode())  # applied by an earlier delivery

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            pass

    consumer = batching(handler, store)
    assert await consumer.process_batch([*records, records[2]]) is True
    assert sorted(store.committed) == sorted(r.key.decode() for r in records)
    assert (store.commits, store.rollbacks, consumer.dead) == (1, 0, [])


async def test_a_batch_whose_commit_fails_is_applied_one_by_one() -> None:
    store = FakeStore()
    records = card_records(3)
    real_batch = store.batch

    @asynccontextmanager
    async def failing_commit(inbox_ids: list[str]) -> AsyncIterator[None]:
        async with real_batch(inbox_ids):
            yield
            raise AutoReconnect("lost at commit")

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            pass

    consumer = RecordingConsumer(handler, batch_max=100, batch_scope=failing_commit)
    assert await consumer.process_batch(records) is True
    assert store.committed == [r.key.decode() for r in records]
    assert consumer.dead == []


async def test_undecodable_records_of_a_batch_are_dead_lettered_and_the_rest_applied() -> None:
    store = FakeStore()
    records = card_records(3)
    broken = ConsumerRecord(TOPIC, 0, 99, 0, 0, b"k", b"\xff", None, 0, 0,
                            list(records[0].headers))

    async def handler(msg: Inbound) -> None:
        async with store.unit(msg.message.contract):
            pass

    consumer = batching(handler, store)
    assert await consumer.process_batch([records[0], broken, *records[1:]]) is True
    assert store.committed == [r.key.decode() for r in records]
    assert [c for c, _ in consumer.dead] == ["not_json"]


# --- partitions at the same time -------------------------------------------------------------

class ConcurrentStore:
    """Batches that may be open at the same time, each with its own writes (as MongoDB runs
    concurrent transactions): notes the order of commits and how many were open at once."""

    def __init__(self) -> None:
        self.committed: list[str] = []
        self.open = self.most_open = 0
        self._staged: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
            "staged", default=None)

    @asynccontextmanager
    async def batch(self, inbox_ids: list[str]) -> AsyncIterator[None]:
        token = self._staged.set([])
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            yield
            await asyncio.sleep(0)  # the commit's round trip: the other batches move on
            self.committed += self._staged.get() or []
        finally:
            self.open -= 1
            self._staged.reset(token)

    async def write(self, contract: str) -> None:
        """Joins the open batch, else is its own transaction (a message applied alone)."""
        await asyncio.sleep(0)  # a database round trip
        staged = self._staged.get()
        (staged if staged is not None else self.committed).append(contract)


def keyed_records(partitions: int, per_partition: int) -> list[ConsumerRecord]:
    """Records of several partitions, interleaved as a fetch returns them; the contract names
    the partition and the record's place in it."""
    out = []
    for i in range(per_partition):
        for p in range(partitions):
            card = CARD.model_copy(update={"contract": f"4{p:03d}{i:04d}"})
            hdrs = signed(Envelope.new(card, source="t").to_headers(), encode(card))
            out.append(ConsumerRecord(TOPIC, p, i, 0, 0, card.contract.encode(), encode(card),
                                      None, 0, 0, [(k, v.encode()) for k, v in hdrs.items()]))
    return out


async def test_partitions_of_a_batch_run_at_the_same_time_each_in_order() -> None:
    store = ConcurrentStore()

    async def handler(msg: Inbound) -> None:
        await store.write(msg.message.contract)

    records = keyed_records(partitions=3, per_partition=5)
    consumer = RecordingConsumer(handler, batch_max=100, batch_scope=store.batch,
                                 partition_concurrency=3)
    assert await consumer.process_batch(records) is True
    assert store.most_open == 3
    assert sorted(store.committed) == sorted(r.key.decode() for r in records)
    for p in range(3):
        mine = [c for c in store.committed if c.startswith(f"4{p:03d}")]
        assert mine == sorted(mine), f"partition {p} applied out of order"


async def test_a_poison_message_in_one_partition_holds_up_no_other_partition() -> None:
    store = ConcurrentStore()
    records = keyed_records(partitions=3, per_partition=4)
    poison = "40010002"  # partition 1, third record
    applied_while_retrying: list[int] = []

    async def handler(msg: Inbound) -> None:
        if msg.message.contract == poison:
            applied_while_retrying.append(len(store.committed))
            raise RuntimeError("fails every time")
        await store.write(msg.message.contract)

    consumer = RecordingConsumer(handler, batch_max=100, batch_scope=store.batch,
                                 partition_concurrency=3, max_attempts=3)
    assert await consumer.process_batch(records) is True
    assert [code for code, _ in consumer.dead] == ["processing_failed"]
    assert sorted(store.committed) == sorted(r.key.decode() for r in records
                                             if r.key.decode() != poison)
    assert max(applied_while_retrying) >= 8, "the other partitions committed meanwhile"


async def test_with_one_partition_at_a_time_the_whole_batch_is_one_transaction() -> None:
    store = ConcurrentStore()

    async def handler(msg: Inbound) -> None:
        await store.write(msg.message.contract)

    consumer = RecordingConsumer(handler, batch_max=100, batch_scope=store.batch,
                                 partition_concurrency=1)
    assert await consumer.process_batch(keyed_records(partitions=3, per_partition=3)) is True
    assert store.most_open == 1 and len(store.committed) == 9
