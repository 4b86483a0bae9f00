"""The outbox relay without a database: what happens to a record once the broker took it
(marked sent, or deleted with ``delete_published``), and that a failed publish leaves the rest
of the batch pending in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from services.runtime.mongo import OutboxRelay

pytestmark = pytest.mark.unit


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, want in query.items():
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

    def find(self, query: dict[str, Any]) -> FakeCursor:
        return FakeCursor([d for d in self.docs if _matches(d, query)])

    async def update_many(self, query: dict[str, Any], update: dict[str, Any]) -> None:
        for d in self.docs:
            if _matches(d, query):
                d.update(update["$set"])

    async def delete_many(self, query: dict[str, Any]) -> Any:
        keep = [d for d in self.docs if not _matches(d, query)]
        deleted, self.docs[:] = len(self.docs) - len(keep), keep
        return SimpleNamespace(deleted_count=deleted)


def record(n: int, status: str = "pending") -> dict[str, Any]:
    return {"_id": f"r{n}", "seq": n, "topic": "notify.otp-requests.v1", "key": "k",
            "payload": f'{{"code": "{n:06d}"}}', "headers": {}, "status": status,
            "owner": "i1", "created_at": datetime.now(UTC) - timedelta(seconds=1)}


class Broker:
    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.fail_at = fail_at

    async def publish(self, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ConnectionError("broker away")
        self.sent.append(value)


def relay(docs: list[dict[str, Any]], broker: Broker, **kw: Any) -> OutboxRelay:
    uow = SimpleNamespace(outbox=FakeOutbox(docs), instance_id="i1", service="test")
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


async def test_a_failed_publish_deletes_only_what_the_broker_took_and_keeps_the_rest_pending(
) -> None:
    docs = [record(1), record(2), record(3)]
    broker = Broker(fail_at=1)
    r = relay(docs, broker, delete_published=True)
    with pytest.raises(ConnectionError):
        await r.publish_pending()
    assert [d["_id"] for d in docs] == ["r2", "r3"]
    assert {d["status"] for d in docs} == {"pending"}
    broker.fail_at = None
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
