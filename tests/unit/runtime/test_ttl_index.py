"""``ensure_ttl_index`` against a fake collection with MongoDB's rules: re-creating an index
with another ``expireAfterSeconds`` fails (IndexOptionsConflict, code 85) and ``collMod``
changes it in place; and against one that answers ``collMod`` ok without effect (nx-27017),
with the dialect of each server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from services.runtime import dialect
from services.runtime.mongo import ensure_ttl_index

pytestmark = pytest.mark.unit


class FakeDatabase:
    def __init__(self, collection: FakeCollection, coll_mod_works: bool) -> None:
        self.collection = collection
        self.coll_mod_works = coll_mod_works
        self.commands: list[dict[str, Any]] = []

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.commands.append(command)
        index = self.collection.indexes[command["index"]["name"]]
        if self.coll_mod_works:
            index["expireAfterSeconds"] = command["index"]["expireAfterSeconds"]
        return {"ok": 1}


class FakeCollection:
    name = "things"

    def __init__(self, *, coll_mod_works: bool = True) -> None:
        self.indexes: dict[str, dict[str, Any]] = {"_id_": {"name": "_id_", "key": {"_id": 1}}}
        self.database = FakeDatabase(self, coll_mod_works)
        self.dropped: list[str] = []

    async def list_indexes(self) -> AsyncIterator[dict[str, Any]]:
        async def listing() -> AsyncIterator[dict[str, Any]]:
            for index in list(self.indexes.values()):
                yield dict(index)
        return listing()

    async def create_index(self, keys: list[tuple[str, int]], *, name: str,
                           expireAfterSeconds: int) -> str:
        same_key = [ix for ix in self.indexes.values() if list(ix["key"].items()) == keys]
        if same_key and same_key[0].get("expireAfterSeconds") != expireAfterSeconds:
            raise OperationFailure("An equivalent index already exists with different "
                                   "options", code=85)
        self.indexes[name] = {"name": name, "key": dict(keys),
                              "expireAfterSeconds": expireAfterSeconds}
        return name

    async def drop_index(self, name: str) -> None:
        self.dropped.append(name)
        del self.indexes[name]


@pytest.fixture
def use_dialect(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(name: str) -> None:
        monkeypatch.setattr(dialect, "_current", dialect.DIALECTS[name])
    return use


async def test_a_changed_retention_is_applied_with_coll_mod_on_mongodb(use_dialect) -> None:
    use_dialect("mongodb")
    things = FakeCollection()
    await ensure_ttl_index(things, "stored_at", 100)
    await ensure_ttl_index(things, "stored_at", 100)
    assert things.database.commands == []
    await ensure_ttl_index(things, "stored_at", 200)
    assert things.indexes["stored_at_ttl"]["expireAfterSeconds"] == 200
    assert [c["collMod"] for c in things.database.commands] == ["things"]
    assert things.dropped == []


async def test_where_coll_mod_has_no_effect_the_index_is_dropped_and_created_again(
        use_dialect) -> None:
    use_dialect("nx27017")
    things = FakeCollection(coll_mod_works=False)
    await ensure_ttl_index(things, "stored_at", 100, name="retention")
    await ensure_ttl_index(things, "stored_at", 200, name="retention")
    assert things.indexes["retention"]["expireAfterSeconds"] == 200
    assert things.dropped == ["retention"]
