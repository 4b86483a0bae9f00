"""The in-memory fakes answer like MongoDB for every operator the stores use, and the fake unit
of work keeps the runtime's guarantees (inbox first, all or nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from contracts.auth import Role
from contracts.envelope import CommandAccepted, ErrorReply
from contracts.notify import GetJournal
from services.access.settings import Settings as AccessSettings
from services.runtime.mongo import AlreadyProcessed
from services.runtime.tokens import TokenError
from services.runtime.usecase import Caller
from tests.unit.fakes import FakeCollection, FakeDatabase, FakeRuntime, matches

pytestmark = pytest.mark.unit

T1 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
T2 = datetime(2025, 9, 1, 9, 0, tzinfo=UTC)


async def _ids(coll: FakeCollection, query: dict) -> list[str]:  # type: ignore[type-arg]
    return [d["_id"] for d in await coll.find(query).to_list(None)]


async def _people() -> FakeCollection:
    coll = FakeCollection("people")
    await coll.insert_many([
        {"_id": "a", "age": 7, "school": "s1", "tags": ["x", "y"], "at": T1,
         "address": {"city": "Izhevsk"}, "left": None},
        {"_id": "b", "age": 9, "school": "s2", "tags": [], "at": T2},
        {"_id": "c", "age": 11, "school": "s1", "left": T2},
    ])
    return coll


def test_equality_matches_a_value_an_array_element_and_a_dotted_path():
    doc = {"a": 1, "tags": ["x"], "sub": {"b": 2}}
    assert matches(doc, {"a": 1, "tags": "x", "sub.b": 2})
    assert not matches(doc, {"a": 2})
    assert not matches(doc, {"sub.b": 3})


def test_null_matches_a_missing_field_and_a_stored_null():
    assert matches({"left": None}, {"left": None})
    assert matches({}, {"left": None})
    assert not matches({"left": T1}, {"left": None})


async def test_in_and_nin():
    coll = await _people()
    assert await _ids(coll, {"_id": {"$in": ["a", "c", "z"]}}) == ["a", "c"]
    assert await _ids(coll, {"tags": {"$in": ["y"]}}) == ["a"]
    assert await _ids(coll, {"school": {"$nin": ["s1"]}}) == ["b"]


async def test_ranges_on_numbers_datetimes_and_strings_skip_missing_and_other_types():
    coll = await _people()
    assert await _ids(coll, {"age": {"$gt": 7, "$lte": 11}}) == ["b", "c"]
    assert await _ids(coll, {"age": {"$gte": 9, "$lt": 11}}) == ["b"]
    assert await _ids(coll, {"at": {"$lt": T2}}) == ["a"]
    assert await _ids(coll, {"school": {"$gte": "s2"}}) == ["b"]
    assert await _ids(coll, {"age": {"$lt": "z"}}) == []


async def test_ne_treats_a_missing_field_as_null():
    coll = await _people()
    assert await _ids(coll, {"left": {"$ne": None}}) == ["c"]
    assert await _ids(coll, {"school": {"$ne": "s1"}}) == ["b"]


async def test_or_and_exists():
    coll = await _people()
    assert await _ids(coll, {"school": "s1", "$or": [{"age": 7}, {"age": {"$gt": 10}}]}) \
        == ["a", "c"]
    assert await _ids(coll, {"$or": [{"left": None}, {"left": {"$lt": T1}}]}) == ["a", "b"]
    assert await _ids(coll, {"address": {"$exists": True}}) == ["a"]


async def test_an_unsupported_operator_fails_loudly():
    coll = await _people()
    with pytest.raises(NotImplementedError):
        await coll.find_one({"age": {"$mod": [2, 0]}})


async def test_find_sorts_limits_and_projects_dotted_paths():
    coll = await _people()
    docs = await coll.find({}, {"address.city": 1}).sort("age", -1).to_list(2)
    assert docs == [{"_id": "c"}, {"_id": "b"}]
    ordered = await coll.find({}).sort([("school", 1), ("age", -1)]).to_list(None)
    assert [d["_id"] for d in ordered] == ["c", "a", "b"]
    assert await coll.find_one({"_id": "a"}, {"address.city": 1, "_id": 0}) == \
        {"address": {"city": "Izhevsk"}}
    assert [d async for d in coll.find({"school": "s2"}, {"_id": 1})] == [{"_id": "b"}]


async def test_a_document_read_is_a_copy():
    coll = await _people()
    doc = await coll.find_one({"_id": "a"})
    assert doc is not None
    doc["tags"].append("z")
    assert (await coll.find_one({"_id": "a"}) or {})["tags"] == ["x", "y"]


async def test_a_second_id_is_a_duplicate_key_error_on_every_insert_path():
    coll = await _people()
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"_id": "a"})
    with pytest.raises(DuplicateKeyError):
        await coll.insert_many([{"_id": "new"}, {"_id": "b"}])
    with pytest.raises(DuplicateKeyError):  # the upsert's filter misses, its insert collides
        await coll.update_one({"_id": "a", "age": 99}, {"$set": {"x": 1}}, upsert=True)
    assert await coll.count_documents({}) == 4  # "new" went in before "b" failed, as ordered


async def test_update_operators_and_upsert_with_set_on_insert():
    coll = await _people()
    result = await coll.update_one({"_id": "a"}, {"$set": {"address.city": "Kazan"},
                                                  "$inc": {"age": 1}, "$push": {"tags": "z"},
                                                  "$setOnInsert": {"created": True}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    doc = await coll.find_one({"_id": "a"})
    assert doc is not None
    assert (doc["address"], doc["age"], doc["tags"]) == ({"city": "Kazan"}, 8, ["x", "y", "z"])
    assert "created" not in doc
    up = await coll.update_one({"_id": "d"}, {"$set": {"age": 5},
                                              "$setOnInsert": {"created": True}}, upsert=True)
    assert up.upserted_id == "d"
    assert await coll.find_one({"_id": "d"}) == {"_id": "d", "age": 5, "created": True}
    assert (await coll.update_one({"_id": "zz"}, {"$set": {"age": 1}})).matched_count == 0


async def test_update_many_and_deletes():
    coll = await _people()
    result = await coll.update_many({"school": "s1"}, {"$set": {"closed": True}})
    assert result.matched_count == 2
    assert await _ids(coll, {"closed": True}) == ["a", "c"]
    assert (await coll.delete_one({"school": "s1"})).deleted_count == 1
    assert (await coll.delete_many({"closed": True})).deleted_count == 1
    assert await _ids(coll, {}) == ["b"]


async def test_replace_one_keeps_the_id_and_upserts_with_the_filters_id():
    coll = await _people()
    result = await coll.replace_one({"_id": "a", "age": 7}, {"age": 8})
    assert result.matched_count == 1
    assert await coll.find_one({"_id": "a"}) == {"_id": "a", "age": 8}
    assert (await coll.replace_one({"_id": "a", "age": 7}, {"age": 9})).matched_count == 0
    await coll.replace_one({"_id": "e"}, {"age": 1}, upsert=True)
    assert await coll.find_one({"_id": "e"}) == {"_id": "e", "age": 1}


async def test_bulk_write_applies_update_ones_in_order():
    coll = await _people()
    result = await coll.bulk_write([
        UpdateOne({"_id": "a"}, {"$set": {"age": 1}, "$setOnInsert": {"new": True}},
                  upsert=True),
        UpdateOne({"_id": "f"}, {"$set": {"age": 2}, "$setOnInsert": {"new": True}},
                  upsert=True)])
    assert (result.matched_count, result.upserted_count) == (1, 1)
    assert await coll.find_one({"_id": "a"}, {"age": 1, "new": 1}) == {"_id": "a", "age": 1}
    assert await coll.find_one({"_id": "f"}) == {"_id": "f", "age": 2, "new": True}


def test_a_database_names_collections_by_attribute_and_by_key():
    db = FakeDatabase()
    assert db.wallet_accounts is db["wallet_accounts"]
    assert db.wallet_accounts.name == "wallet_accounts"


async def test_a_transaction_that_raises_leaves_nothing_behind():
    rt = FakeRuntime("access", AccessSettings)
    msg = rt.inbound(CommandAccepted(request_id="r-1"))
    with pytest.raises(RuntimeError):
        async with rt.transaction(msg) as tx:
            await tx.db.access_days.insert_one({"_id": "d-1"})
            tx.emit("access.events.v1", "k", CommandAccepted(request_id="r-1"))
            raise RuntimeError("boom")
    assert rt.fake_db.dump() == {}
    assert rt.fake_uow.sent == []


async def test_the_inbox_refuses_a_message_id_it_has_seen():
    rt = FakeRuntime("access", AccessSettings)
    msg = rt.inbound(CommandAccepted(request_id="r-1"))
    async with rt.transaction(msg) as tx:
        await tx.db.access_days.insert_one({"_id": "d-1"})
    with pytest.raises(AlreadyProcessed):
        async with rt.transaction(msg):
            pytest.fail("a duplicate must not reach the handler's block")
    async with rt.transaction(msg, inbox=False):
        pass  # without the inbox (ticks), the same cause may run again
    assert rt.fake_uow.commits == 2


async def test_replies_go_to_the_requesters_topic_and_events_to_theirs():
    rt = FakeRuntime("access", AccessSettings)
    msg = rt.inbound(CommandAccepted(request_id="r-1"), token=rt.token())
    async with rt.transaction(msg) as tx:
        tx.emit("access.events.v1", "k", CommandAccepted(request_id="e-1"))
        tx.fail("forbidden", "no")
    assert rt.emitted(CommandAccepted) == [CommandAccepted(request_id="e-1")]
    assert isinstance(rt.reply(), ErrorReply)
    assert rt.error_code() == "forbidden"
    assert rt.fake_uow.replies[0].envelope.causation_id == msg.envelope.id


async def test_tokens_are_verified_with_the_runtimes_key_and_clock():
    rt = FakeRuntime("notify", AccessSettings)
    own = rt.inbound(GetJournal(account_id="acc_parent0001"), token=rt.token(Role.SUPPORT))
    assert Caller(own, rt.claims).authorize("view").role is Role.SUPPORT
    stranger = FakeRuntime("notify", AccessSettings)
    forged = rt.inbound(GetJournal(account_id="acc_parent0001"), token=stranger.token())
    with pytest.raises(TokenError) as refused:
        rt.claims(forged)
    assert refused.value.code == "unknown_key"
    rt.now = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(TokenError) as expired:
        rt.claims(own)
    assert expired.value.code == "token_expired"
