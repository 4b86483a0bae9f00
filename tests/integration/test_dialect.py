"""The nx27017 dialect against the real dev server, one test per query quirk: the dialect's
operation gets the right answer, and where the quirk shows deterministically, the plain
MongoDB query (the mongodb dialect's) does not. The mongodb dialect's plain queries are
checked without a server in tests/unit/runtime/test_dialect.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReplaceOne

from services.runtime import dialect
from services.runtime.mongo import ensure_ttl_index
from tests.support import uid

pytestmark = pytest.mark.integration

NX = dialect.DIALECTS["nx27017"]
PLAIN = dialect.DIALECTS["mongodb"]


@pytest.fixture
async def db(mongo_uri: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    name = uid("dialect")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


def test_the_test_session_selects_the_dev_server_dialect(mongo_uri: str) -> None:
    assert dialect.current() is NX


async def test_instants_kept_as_epoch_ms_compare_as_a_range_right_after_the_write(db) -> None:
    """A $lt range on a datetime may miss fresh documents (not deterministic, so not shown
    here); ``instant`` keeps compared times as epoch milliseconds."""
    now = datetime.now(UTC)
    await db.parked.insert_many([
        {"_id": "old", "parked_ms": NX.instant(now - timedelta(minutes=5))},
        {"_id": "new", "parked_ms": NX.instant(now)}])
    older = await db.parked.find(
        {"parked_ms": {"$lt": NX.instant(now - timedelta(minutes=1))}}).to_list(None)
    assert [d["_id"] for d in older] == ["old"]
    recent = await db.parked.find({"parked_ms": {"$gte": NX.instant(now)}}).to_list(None)
    assert [d["_id"] for d in recent] == ["new"]
    stored = await db.parked.find_one({"_id": "new"})
    assert NX.read_instant(stored["parked_ms"]) == now.replace(
        microsecond=now.microsecond // 1000 * 1000)


async def test_a_datetime_set_on_an_existing_document_is_read_back_by_read_instant(db) -> None:
    at = datetime(2026, 9, 1, 5, 12, 30, 468000, tzinfo=UTC)
    await db.cards.insert_many([{"_id": "a", "closed_at": None}, {"_id": "b"}])
    await db.cards.update_many({}, {"$set": {"closed_at": at}})
    doc = await db.cards.find_one({"_id": "a"})
    assert isinstance(doc["closed_at"], str)  # the quirk: a string, not a date
    assert NX.read_instant(doc["closed_at"]) == at


async def test_a_lease_set_with_update_many_still_compares_as_a_time(db) -> None:
    """notify's lease: written with $set in update_many (where a datetime would become a
    string), compared with $lt afterwards."""
    now = datetime.now(UTC)
    await db.messages.insert_many([{"_id": i, "lease_until": None} for i in range(3)])
    await db.messages.update_many({"_id": {"$in": [0, 1]}},
                                  {"$set": {"lease_until": NX.instant(now)}})
    await db.messages.update_many({"_id": 1}, {"$set": {
        "lease_until": NX.instant(now + timedelta(minutes=5))}})
    expired = await db.messages.find(
        {"lease_until": {"$lt": NX.instant(now + timedelta(seconds=1))}}).to_list(None)
    assert [d["_id"] for d in expired] == [0]
    leased = await db.messages.find_one({"_id": 1})
    assert NX.read_instant(leased["lease_until"]) > now


async def relay_outbox(db: Any) -> Any:
    outbox = db.outbox
    await outbox.create_indexes([IndexModel([("status", ASCENDING), ("seq", ASCENDING)])])
    old = datetime.now(UTC) - timedelta(hours=1)
    await outbox.insert_many([
        {"_id": "sent-mine", "status": "sent", "owner": "me", "created_at": old, "seq": 1},
        {"_id": "mine", "status": "pending", "owner": "me", "created_at": datetime.now(UTC),
         "seq": 2},
        {"_id": "orphan", "status": "pending", "owner": "dead", "created_at": old, "seq": 3},
        {"_id": "theirs", "status": "pending", "owner": "other",
         "created_at": datetime.now(UTC), "seq": 4},
        {"_id": "mine-later", "status": "pending", "owner": "me",
         "created_at": datetime.now(UTC), "seq": 5},
    ])
    return outbox


async def test_any_of_finds_what_one_or_query_should_where_the_dev_server_ignores_the_rest(
        db) -> None:
    """The relay's query: its own pending records, and others' old enough to take over."""
    outbox = await relay_outbox(db)
    relay_filters = [{"owner": "me"},
                     {"created_at": {"$lt": datetime.now(UTC) - timedelta(minutes=1)}}]
    plain = await PLAIN.any_of(outbox, relay_filters, where={"status": "pending"}, sort="seq")
    assert "sent-mine" in {d["_id"] for d in plain}  # the quirk: "status" was ignored

    found = await NX.any_of(outbox, relay_filters, where={"status": "pending"}, sort="seq")
    assert [d["_id"] for d in found] == ["mine", "orphan", "mine-later"]
    first = await NX.any_of(outbox, relay_filters, where={"status": "pending"}, sort="seq",
                            limit=2)
    assert [d["_id"] for d in first] == ["mine", "orphan"]


async def test_has_matches_an_element_of_an_indexed_array_field(db) -> None:
    children = db.children
    await children.create_indexes([IndexModel([("guardian_ids", ASCENDING)])])
    await children.insert_many([{"_id": "c1", "contract_number": "1", "guardian_ids": ["a", "b"]},
                                {"_id": "c2", "contract_number": "2", "guardian_ids": ["c"]}])
    assert await children.find(PLAIN.has("guardian_ids", "b")).to_list(None) == []  # the quirk
    found = await children.find(NX.has("guardian_ids", "b")).to_list(None)
    assert [d["_id"] for d in found] == ["c1"]
    either = await children.find({"$or": [{"contract_number": "9"},
                                          NX.has("guardian_ids", "c")]}).to_list(None)
    assert [d["_id"] for d in either] == ["c2"]


async def test_an_upsert_replacement_keeps_the_filters_id(db) -> None:
    await db.things.replace_one({"_id": "plain"}, PLAIN.upsert_replacement("plain", {"v": 1}),
                                upsert=True)
    inserted = await db.things.find_one({"v": 1})
    assert isinstance(inserted["_id"], ObjectId)  # the quirk: the filter's _id was dropped

    await db.things.replace_one({"_id": "k"}, NX.upsert_replacement("k", {"v": 2}),
                                upsert=True)
    await db.things.bulk_write([ReplaceOne({"_id": "b"}, NX.upsert_replacement("b", {"v": 3}),
                                           upsert=True)])
    assert await db.things.find_one({"_id": "k"}) == {"_id": "k", "v": 2}
    assert await db.things.find_one({"_id": "b"}) == {"_id": "b", "v": 3}
    await db.things.replace_one({"_id": "k"}, NX.upsert_replacement("k", {"v": 4}),
                                upsert=True)
    assert await db.things.count_documents({"_id": "k"}) == 1
    assert (await db.things.find_one({"_id": "k"}))["v"] == 4


async def test_a_projection_of_nested_fields_comes_back_nested(db) -> None:
    await db.rules.insert_one({"_id": "op", "rules": {"reminder_days": 5, "fares": [1, 2]}})
    plain = await db.rules.find_one({}, PLAIN.projection("rules.reminder_days"))
    assert "rules" not in plain  # the quirk: {"rules.reminder_days": 5}

    doc = await db.rules.find_one({}, NX.projection("rules.reminder_days"))
    assert doc["rules"]["reminder_days"] == 5
    assert NX.projection("status") == {"status": 1}  # top-level fields are projected


async def test_change_expiry_changes_a_ttl_index_where_coll_mod_does_not(db) -> None:
    things = db.things
    await ensure_ttl_index(things, "stored_at", 100)
    indexes = [ix async for ix in await things.list_indexes()
               if list(ix["key"].items()) == [("stored_at", 1)]]
    index = indexes[0]
    await PLAIN.change_expiry(things, index, "stored_at", 200, "stored_at_ttl")
    assert (await ttl(things)) == [100]  # the quirk: collMod answered ok, changed nothing

    await NX.change_expiry(things, index, "stored_at", 200, "stored_at_ttl")
    assert (await ttl(things)) == [200]


async def ttl(collection: Any) -> list[int | None]:
    info = await collection.index_information()
    return [ix.get("expireAfterSeconds") for ix in info.values()
            if ix["key"] == [("stored_at", 1)]]


# Layouts kept on both servers (services/runtime/dialect.py): why they cannot be switched.

async def test_in_combined_with_or_misses_documents_hence_notifys_sendable_copy(db) -> None:
    now = datetime.now(UTC)
    await db.messages.insert_many([
        {"_id": 1, "status": "pending", "sendable": True, "due_at": now - timedelta(seconds=1),
         "lease_until": None},
        {"_id": 2, "status": "sent", "sendable": False, "due_at": now - timedelta(seconds=1),
         "lease_until": None}])
    lease = {"$or": [{"lease_until": None}, {"lease_until": {"$lt": NX.instant(now)}}]}
    plain = await db.messages.find({"status": {"$in": ["pending", "failed"]},
                                     "due_at": {"$lte": now}, **lease}).to_list(None)
    assert plain == []  # the quirk
    found = await db.messages.find({"sendable": True, "due_at": {"$lte": now},
                                     **lease}).to_list(None)
    assert [d["_id"] for d in found] == [1]


async def test_a_range_inside_an_array_of_documents_finds_nothing_hence_scalar_copies(
        db) -> None:
    expiry = datetime(2026, 1, 31, tzinfo=UTC)
    await db.accounts.insert_one({"_id": "a", "bonus_lots": [{"expires_at": expiry}],
                                  "next_bonus_expiry": expiry})
    now = datetime(2026, 2, 1, tzinfo=UTC)
    assert await db.accounts.find(
        {"bonus_lots.expires_at": {"$lte": now}}).to_list(None) == []  # the quirk
    found = await db.accounts.find({"next_bonus_expiry": {"$lte": now}}).to_list(None)
    assert [d["_id"] for d in found] == ["a"]


async def test_every_field_of_a_compound_index_but_the_last_gets_its_own_index(db) -> None:
    """The dev server treats an equality as indexed only when an index's name ends with the
    field, and names a compound index after all its fields: without its own index, the first
    field of (status, seq) was matched by a scan of the whole collection."""
    outbox = db.outbox
    await NX.create_indexes(outbox, [IndexModel([("status", ASCENDING), ("seq", ASCENDING)]),
                                     IndexModel([("owner", ASCENDING)])])
    indexes = [(list(ix["key"]), ix["name"]) async for ix in await outbox.list_indexes()]
    assert sorted(k for k, _ in indexes) == [["_id"], ["owner"], ["status"], ["status", "seq"]]
    assert all(name.endswith(f"_{k[-1]}") for k, name in indexes if k != ["_id"])
    plain = db.plain
    await PLAIN.create_indexes(plain, [IndexModel([("status", ASCENDING), ("seq", ASCENDING)])])
    assert sorted([list(ix["key"]) async for ix in await plain.list_indexes()]) == [
        ["_id"], ["status", "seq"]]
