"""The outbox relay without a database: what happens to a record once the broker took it
(marked sent, or deleted with ``delete_published``), that an outage leaves the batch pending in
order and blames no record, that a record the broker refuses while it is up holds back only
its own key until it is parked, what the relay reports of its backlog whatever the broker
answers, and that each record is published in the trace it was emitted in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError, UnknownTopicOrPartitionError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.runtime import metrics
from services.runtime.mongo import BrokerUnavailable, OutboxRelay

pytestmark = pytest.mark.unit


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, want in query.items():
        if key == "$or":
            if not any(_matches(doc, alternative) for alternative in want):
                return False
            continue
        have = doc.get(key)
        if isinstance(want, dict):
            if "$in" in want and have not in want["$in"]:
                return False
            if "$lt" in want and not (have is not None and have < want["$lt"]):
                return False
        elif have != want:
            return False
    return True


class FakeCursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def sort(self, key: str, _direction: int) -> FakeCursor:
        return FakeCursor(sorted(self.docs, key=lambda d: d[key]))

    async def to_list(self, length: int | None) -> list[dict[str, Any]]:
        return [dict(d) for d in self.docs[:length]]


class FakeOutbox:
    """The few collection calls the relay makes, over a list of documents."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def find(self, query: dict[str, Any], session: Any = None) -> FakeCursor:
        return FakeCursor([d for d in self.docs if _matches(d, query)])

    async def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> None:
        for d in self.docs:
            if _matches(d, query):
                d.update(update["$set"])

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> None:
        for d in self.docs:
            if _matches(d, query):
                d.update(update["$set"])
                return

    async def count_documents(self, query: dict[str, Any]) -> int:
        return sum(1 for d in self.docs if _matches(d, query))

    async def delete_many(self, query: dict[str, Any]) -> Any:
        keep = [d for d in self.docs if not _matches(d, query)]
        deleted, self.docs[:] = len(self.docs) - len(keep), keep
        return SimpleNamespace(deleted_count=deleted)


def record(n: int, status: str = "pending", *, key: str = "k",
           topic: str = "notify.otp-requests.v1") -> dict[str, Any]:
    return {"_id": f"r{n}", "seq": n, "topic": topic, "key": key,
            "payload": f'{{"code": "{n:06d}"}}', "headers": {}, "status": status,
            "owner": "i1", "created_at": datetime.now(UTC) - timedelta(seconds=1)}


class Broker:
    """Takes records, except: the ``fail_at``-th publish raises (an outage), topics in
    ``refused`` raise ``refusal`` (a record the broker will not take)."""

    def __init__(self, fail_at: int | None = None, refused: set[str] = frozenset(),  # type: ignore[assignment]
                 refusal: Exception | None = None) -> None:
        self.sent: list[bytes] = []
        self.calls: list[str] = []
        self.traces: list[int] = []  # the trace current at each publish (0: none)
        self.fail_at = fail_at
        self.refused = set(refused)
        self.refusal = refusal or UnknownTopicOrPartitionError()
        self.up = True

    async def publish(self, topic: str, key: str, value: bytes,
                      headers: dict[str, str]) -> asyncio.Future[None]:
        """The producer's part: takes the record at once; the delivery says what the broker
        answered (an outage and a refusal come back there, as from aiokafka)."""
        self.calls.append(topic)
        self.traces.append(trace.get_current_span().get_span_context().trace_id)
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            delivery.set_exception(ConnectionError("broker away"))
        elif topic in self.refused:
            delivery.set_exception(self.refusal)
        else:
            self.sent.append(value)
            delivery.set_result(None)
        return delivery

    async def ping(self) -> bool:
        return self.up


def relay(docs: list[dict[str, Any]], broker: Broker, **kw: Any) -> OutboxRelay:
    uow = SimpleNamespace(outbox=FakeOutbox(docs), instance_id="i1",
                          service=kw.pop("service", "test"))
    kw.setdefault("broker_up", broker.ping)
    return OutboxRelay(uow, broker.publish, **kw)  # type: ignore[arg-type]


async def test_by_default_published_records_are_marked_sent_and_kept() -> None:
    docs = [record(1), record(2)]
    broker = Broker()
    assert await relay(docs, broker).publish_pending() == 2
    assert len(broker.sent) == 2
    assert [d["status"] for d in docs] == ["sent", "sent"] and all(d["published_at"] for d in docs)


async def test_with_delete_published_the_broker_gets_every_record_and_the_outbox_keeps_none(
) -> None:
    docs = [record(1), record(2), record(3)]
    broker = Broker()
    assert await relay(docs, broker, delete_published=True).publish_pending() == 3
    assert [v.decode() for v in broker.sent] == [f'{{"code": "{n:06d}"}}' for n in (1, 2, 3)]
    assert docs == []


async def test_an_outage_deletes_only_what_the_broker_took_and_blames_no_record(
) -> None:
    docs = [record(1), record(2, key="other"), record(3)]
    broker = Broker(fail_at=1)
    broker.up = False
    r = relay(docs, broker, delete_published=True, max_attempts=1)
    with pytest.raises(BrokerUnavailable):
        await r.publish_pending()
    assert [d["_id"] for d in docs] == ["r2", "r3"]
    assert {d["status"] for d in docs} == {"pending"}
    assert not any("attempts" in d for d in docs)
    broker.fail_at, broker.up = None, True
    assert await r.publish_pending() == 2 and docs == []
    assert len(broker.sent) == 3


async def run_until(r: Any, done: Callable[[], bool], timeout: float = 2.0) -> None:
    """Run the relay loop until ``done()`` holds (or the deadline passes), then stop it."""
    task = asyncio.create_task(r.run())
    try:
        for _ in range(int(timeout / 0.01)):
            if done():
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_switching_delete_published_on_also_clears_records_marked_sent_before() -> None:
    docs = [record(1, "sent"), record(2, "sent"), record(3)]
    broker = Broker()
    await run_until(relay(docs, broker, delete_published=True), lambda: not docs)
    assert docs == [] and len(broker.sent) == 1


async def test_the_default_relay_never_deletes() -> None:
    docs = [record(1, "sent"), record(2)]
    await run_until(relay(docs, Broker()), lambda: docs[1]["status"] == "sent")
    assert [d["status"] for d in docs] == ["sent", "sent"]


def parked(reason: str) -> float:
    return metrics.OUTBOX_PARKED.labels("test", reason)._value.get()


async def test_a_record_the_broker_refuses_holds_back_only_its_own_key_until_it_is_parked(
) -> None:
    """The poison reply is the oldest record: the records of other keys flow from the first
    pass, the next record of its own key waits (per-key order), and once the poison record
    has been refused max_attempts times it is parked and its key flows again."""
    poison = record(1, key="corr-1", topic="apps.replies.gone.v1")
    docs = [poison, record(2, key="card-7"), record(3, key="corr-1"), record(4, key="card-8")]
    broker = Broker(refused={"apps.replies.gone.v1"})
    r = relay(docs, broker, max_attempts=3, retry_base_s=0.0)
    before = parked("unpublishable")
    assert await r.publish_pending() == 4
    assert [d["status"] for d in docs] == ["pending", "sent", "pending", "sent"]
    assert poison["attempts"] == 1 and "UnknownTopicOrPartition" in poison["last_error"]
    await r.publish_pending()
    assert [d["status"] for d in docs] == ["pending", "sent", "pending", "sent"]
    await r.publish_pending()
    assert poison["status"] == "parked" and poison["park_reason"] == "unpublishable"
    assert poison["attempts"] == 3 and poison["parked_at"] is not None
    assert parked("unpublishable") == before + 1
    await r.publish_pending()
    assert docs[2]["status"] == "sent"
    assert broker.calls.count("apps.replies.gone.v1") == 3


async def test_a_refused_record_is_not_tried_again_before_its_pause_is_over() -> None:
    poison = record(1, topic="apps.replies.gone.v1")
    docs = [poison, record(2)]
    broker = Broker(refused={"apps.replies.gone.v1"})
    r = relay(docs, broker, max_attempts=5, retry_base_s=60.0)
    await r.publish_pending()
    await r.publish_pending()
    assert broker.calls == ["apps.replies.gone.v1"]
    assert poison["attempts"] == 1 and poison["retry_at_s"] > 0
    assert docs[1]["status"] == "pending"  # same key: waits behind it, in order


async def test_a_record_larger_than_the_broker_takes_is_parked_at_once() -> None:
    docs = [record(1, topic="wallet.statement.v1"), record(2)]
    broker = Broker(refused={"wallet.statement.v1"}, refusal=MessageSizeTooLargeError())
    before = parked("too_large")
    await relay(docs, broker, max_attempts=5).publish_pending()
    assert docs[0]["status"] == "parked" and docs[0]["park_reason"] == "too_large"
    assert docs[1]["status"] == "sent"
    assert parked("too_large") == before + 1


async def test_a_record_for_a_name_kafka_refuses_is_parked_without_asking_the_broker() -> None:
    docs = [record(1, topic="no such topic!"), record(2, topic="x" * 300), record(3)]
    broker = Broker()
    await relay(docs, broker).publish_pending()
    assert [d.get("park_reason") for d in docs] == ["invalid_topic", "invalid_topic", None]
    assert broker.calls == ["notify.otp-requests.v1"] and docs[2]["status"] == "sent"


async def test_a_parked_record_of_an_outbox_carrying_secrets_keeps_no_payload() -> None:
    docs = [record(1, topic="no such topic!"), record(2)]
    await relay(docs, Broker(), carries_secrets=True).publish_pending()
    assert [d["_id"] for d in docs] == ["r1"]  # the published one is deleted
    assert docs[0]["status"] == "parked"
    assert docs[0]["payload"] == "" and docs[0]["headers"] == {}


async def test_a_parked_record_of_an_ordinary_outbox_keeps_its_payload_to_send_again() -> None:
    docs = [record(1, topic="no such topic!"), record(2)]
    docs[0]["headers"] = {"ce_type": "OtpRequested"}
    await relay(docs, Broker(), delete_published=True).publish_pending()
    assert [d["_id"] for d in docs] == ["r1"]
    assert docs[0]["status"] == "parked"
    assert docs[0]["payload"] == '{"code": "000001"}'
    assert docs[0]["headers"] == {"ce_type": "OtpRequested"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def reported(service: str) -> tuple[float, float]:
    """(schoolcard_outbox_lag_seconds, schoolcard_outbox_backlog) of ``service``."""
    return (metrics.OUTBOX_LAG.labels(service)._value.get(),
            metrics.OUTBOX_BACKLOG.labels(service)._value.get())


def failures(service: str, reason: str) -> float:
    return metrics.OUTBOX_FAILURES.labels(service, reason)._value.get()


def aged(n: int, clock: Clock, seconds: float, **kw: Any) -> dict[str, Any]:
    return {**record(n, **kw), "created_at": clock.now - timedelta(seconds=seconds)}


async def test_a_relay_whose_broker_refuses_everything_reports_a_growing_lag_and_backlog(
) -> None:
    """The broker is away: every pass fails, and each one still reports the age of the oldest
    record waiting (600 s, then older) and how many wait, counting the failures."""
    clock = Clock()
    docs = [aged(1, clock, 600), aged(2, clock, 300, key="other"), aged(3, clock, 10)]
    broker = Broker(fail_at=0)
    broker.up = False
    r = relay(docs, broker, service="refused-all", clock=clock)
    await run_until(r, lambda: failures("refused-all", "broker_unavailable") >= 2)
    lag, backlog = reported("refused-all")
    assert lag == pytest.approx(600, abs=1) and backlog == 3
    docs.append(aged(4, clock, 0))
    clock.now += timedelta(seconds=60)
    await run_until(r, lambda: failures("refused-all", "broker_unavailable") >= 4)
    lag, backlog = reported("refused-all")
    assert lag == pytest.approx(660, abs=1) and backlog == 4
    assert broker.sent == [] and {d["status"] for d in docs} == {"pending"}


async def test_records_refused_while_the_broker_answers_count_as_failures_and_stay_in_the_backlog(
) -> None:
    clock = Clock()
    docs = [aged(1, clock, 120, topic="apps.replies.gone.v1"), aged(2, clock, 5, key="b")]
    broker = Broker(refused={"apps.replies.gone.v1"})
    r = relay(docs, broker, service="refused-one", clock=clock, max_attempts=5,
              retry_base_s=60.0)
    await r.publish_pending()
    assert reported("refused-one") == (pytest.approx(120, abs=1), 1)
    assert failures("refused-one", "refused") == 1
    clock.now += timedelta(seconds=30)
    await r.publish_pending()  # its pause is not over: nothing is tried, the lag still grows
    assert reported("refused-one") == (pytest.approx(150, abs=1), 1)


async def test_a_relay_that_published_everything_reports_no_lag_and_no_backlog() -> None:
    clock = Clock()
    docs = [aged(1, clock, 600), aged(2, clock, 10)]
    r = relay(docs, Broker(), service="drained", clock=clock, delete_published=True)
    await r.publish_pending()
    assert docs == [] and reported("drained") == (0, 0)
    await r.publish_pending()  # nothing to do: still reported
    assert reported("drained") == (0, 0)


async def test_behind_a_full_batch_the_backlog_counts_every_pending_record() -> None:
    clock = Clock()
    docs = [aged(n, clock, 100 - n, key=f"k{n}") for n in range(1, 6)]
    r = relay(docs, Broker(), service="full-batch", clock=clock, batch=2,
              delete_published=True)
    assert await r.publish_pending() == 2
    assert reported("full-batch") == (pytest.approx(97, abs=1), 3)


async def test_each_record_is_published_in_the_trace_it_was_emitted_in() -> None:
    """A record that stored a trace context is published under it; one without is published
    as a new root, not under whatever span the relay's task happens to run in."""
    emitted = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    docs = [{**record(1), "headers": {"traceparent": emitted}}, record(2, key="other")]
    broker = Broker()
    tracer = trace.get_tracer("test", tracer_provider=TracerProvider())
    with tracer.start_as_current_span("unrelated"):
        await relay(docs, broker).publish_pending()
    assert broker.traces == [0x0af7651916cd43dd8448eb211c80319c, 0]
