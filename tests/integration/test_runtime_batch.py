"""A batch's units of work on the MongoDB-protocol server: they share one transaction (a
later message sees an earlier one's writes), their inbox markers and outbox records are
written at the commit in order, a failure rolls every one of them back, and a message already
in the inbox, or twice in the batch, is refused before it writes."""

from __future__ import annotations

import uuid

import pytest

from contracts.integrations import TopUpReceived
from services.runtime.mongo import AlreadyProcessed, ConcurrencyError, UnitOfWork, connect

pytestmark = pytest.mark.integration


@pytest.fixture
async def uow(infra: dict[str, str]):  # type: ignore[no-untyped-def]
    client = connect(infra["SCHOOLCARD_MONGO_URI"])
    work = UnitOfWork(client, f"batch_{uuid.uuid4().hex[:8]}", "test", "i1",
                      snapshot_reads=False)
    await work.ensure_indexes()
    yield work
    await client.close()


def top_up(n: int) -> TopUpReceived:
    return TopUpReceived(payment_id=f"p{n}", contract="40012345", amount=100 * n,
                         channel="terminal", paid_at="2026-09-01T05:00:00Z")


async def add(uow: UnitOfWork, inbox_id: str, amount: int) -> None:
    async with uow.transaction(inbox_id=inbox_id) as tx:
        doc = await tx.db.counters.find_one({"_id": "c"}, session=tx.session)
        total = (doc or {}).get("total", 0) + amount
        await tx.db.counters.replace_one({"_id": "c"}, {"_id": "c", "total": total},
                                         upsert=True, session=tx.session)
        tx.emit("test.events.v1", "c", top_up(amount))


async def test_units_of_a_batch_share_its_transaction_and_write_inbox_and_outbox_at_commit(
        uow: UnitOfWork) -> None:
    async with uow.batch(["m1", "m2", "m3"]):
        for n, inbox_id in enumerate(["m1", "m2", "m3"], start=1):
            await add(uow, inbox_id, n)
    assert (await uow.db.counters.find_one({"_id": "c"}))["total"] == 6
    assert {d["_id"] for d in await uow.inbox.find({}).to_list(None)} == {"m1", "m2", "m3"}
    outbox = await uow.outbox.find({}).sort("seq", 1).to_list(None)
    assert [d["key"] for d in outbox] == ["c", "c", "c"]
    assert [d["payload"] for d in outbox] == [top_up(n).model_dump_json() for n in (1, 2, 3)]


async def test_a_failing_unit_rolls_back_every_unit_of_its_batch(uow: UnitOfWork) -> None:
    with pytest.raises(RuntimeError):
        async with uow.batch(["m1", "m2"]):
            await add(uow, "m1", 1)
            await add(uow, "m2", 2)
            raise RuntimeError("the third message failed")
    assert await uow.db.counters.find_one({"_id": "c"}) is None
    assert await uow.inbox.count_documents({}) == 0
    assert await uow.outbox.count_documents({}) == 0


async def test_a_message_seen_before_or_twice_in_a_batch_is_refused_before_it_writes(
        uow: UnitOfWork) -> None:
    await add(uow, "m1", 1)  # applied earlier, alone
    async with uow.batch(["m1", "m2", "m2"]):
        with pytest.raises(AlreadyProcessed):
            await add(uow, "m1", 10)
        await add(uow, "m2", 2)
        with pytest.raises(AlreadyProcessed):
            await add(uow, "m2", 20)
    assert (await uow.db.counters.find_one({"_id": "c"}))["total"] == 3
    assert await uow.outbox.count_documents({}) == 2


async def test_reference_documents_are_read_once_per_batch_and_again_after_a_write(
        uow: UnitOfWork) -> None:
    await uow.db.schedules.insert_one({"_id": "s1", "opens": "08:00"})
    reads: list[str] = []

    async def schedule(tx) -> dict:  # type: ignore[no-untyped-def, type-arg]
        async def load() -> dict | None:  # type: ignore[type-arg]
            reads.append("s1")
            return await tx.db.schedules.find_one({"_id": "s1"}, session=tx.session)
        return await tx.cached("schedules", "s1", load)

    seen = []
    async with uow.batch(["m1", "m2", "m3", "m4"]):
        for inbox_id in ("m1", "m2"):
            async with uow.transaction(inbox_id=inbox_id) as tx:
                doc = await schedule(tx)
                doc["opens"] = "mutated by a caller"  # a copy: the next message never sees it
                seen.append(await schedule(tx))
        async with uow.transaction(inbox_id="m3") as tx:  # a write, then forget
            await tx.db.schedules.replace_one({"_id": "s1"}, {"_id": "s1", "opens": "09:00"},
                                              session=tx.session)
            tx.forget("schedules")
        async with uow.transaction(inbox_id="m4") as tx:
            seen.append(await schedule(tx))
    assert reads == ["s1", "s1"]  # once before the write, once after it
    assert [d["opens"] for d in seen] == ["08:00", "08:00", "09:00"]
    async with uow.transaction(inbox_id="m5") as tx:  # alone: read every time
        await schedule(tx)
        await schedule(tx)
    assert len(reads) == 4


async def bump(uow: UnitOfWork, inbox_id: str, step: int) -> None:
    """A versioned counter, read with ``load`` and written with ``stage``."""
    async with uow.transaction(inbox_id=inbox_id) as tx:
        doc = await tx.load(tx.db.versioned, "c")
        loaded = doc["version"] if doc else None
        new = {"_id": "c", "version": (loaded or 0) + 1, "total": (doc or {}).get("total", 0)
               + step}
        tx.stage(tx.db.versioned, new, loaded, version=new["version"])


async def test_staged_documents_are_seen_by_the_batch_and_written_once_at_its_commit(
        uow: UnitOfWork) -> None:
    async with uow.batch(["m1", "m2", "m3"]):
        for n, inbox_id in enumerate(["m1", "m2", "m3"], start=1):
            await bump(uow, inbox_id, n)
    assert await uow.db.versioned.find_one({"_id": "c"}) == {"_id": "c", "version": 3,
                                                              "total": 6}
    await bump(uow, "m4", 10)  # alone: written at its own commit, replacing version 3
    assert (await uow.db.versioned.find_one({"_id": "c"}))["total"] == 16


async def test_a_staged_document_changed_by_another_writer_fails_the_commit(
        uow: UnitOfWork) -> None:
    await bump(uow, "m1", 1)
    await bump(uow, "m2", 1)  # version 2 stored: another instance got there first
    with pytest.raises(ConcurrencyError):
        async with uow.batch(["m3"]), uow.transaction(inbox_id="m3") as tx:
            tx.stage(tx.db.versioned, {"_id": "c", "version": 2, "total": 100}, 1, version=2)
    assert await uow.db.versioned.find_one({"_id": "c"}) == {"_id": "c", "version": 2,
                                                              "total": 2}
    assert await uow.inbox.find_one({"_id": "m3"}) is None  # the message is not consumed


async def test_staging_over_a_version_the_batch_already_changed_is_a_conflict(
        uow: UnitOfWork) -> None:
    await bump(uow, "m1", 1)
    with pytest.raises(ConcurrencyError):
        async with uow.batch(["m2", "m3"]):
            await bump(uow, "m2", 1)
            async with uow.transaction(inbox_id="m3") as tx:  # read past the staged version
                stale = await tx.db.versioned.find_one({"_id": "c"}, session=tx.session)
                tx.stage(tx.db.versioned, {**stale, "version": 2, "total": 50},
                         stale["version"], version=2)
    assert (await uow.db.versioned.find_one({"_id": "c"}))["total"] == 1
