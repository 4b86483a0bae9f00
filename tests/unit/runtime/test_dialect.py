"""The mongodb dialect writes plain MongoDB queries and real datetimes; the dialect is a
setting, mongodb unless the dev stack selects nx27017. (The nx27017 dialect against the dev
server: tests/integration/test_dialect.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo.errors import OperationFailure

from deploy.local import stack as devstack
from services.runtime import dialect
from services.runtime.settings import InfraSettings

pytestmark = pytest.mark.unit

MONGO = dialect.DIALECTS["mongodb"]
NX = dialect.DIALECTS["nx27017"]
AT = datetime(2026, 9, 1, 5, 12, 30, 468000, tzinfo=UTC)


class Cursor:
    def __init__(self, log: list[Any], docs: list[dict[str, Any]]) -> None:
        self.log, self.docs = log, docs

    def sort(self, key: str, direction: int) -> Cursor:
        self.log.append(("sort", key, direction))
        return self

    async def to_list(self, length: int | None) -> list[dict[str, Any]]:
        self.log.append(("to_list", length))
        return self.docs


class Collection:
    """Records the calls; answers ``find`` with the documents given for its filter."""

    name = "things"

    def __init__(self, answers: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.log: list[Any] = []
        self.answers = answers or {}
        self.database = self

    def find(self, query: dict[str, Any], session: Any = None) -> Cursor:
        self.log.append(("find", query, session))
        return Cursor(self.log, self.answers.get(repr(query), []))

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        self.log.append(("command", command))
        return {"ok": 1}


def test_mongodb_stores_and_compares_real_datetimes() -> None:
    assert MONGO.instant(AT) == AT
    assert MONGO.instant(AT.astimezone(timezone(timedelta(hours=4)))) == AT
    assert MONGO.instant(AT).tzinfo is UTC
    assert MONGO.read_instant(AT) == AT
    assert MONGO.read_instant(AT.replace(tzinfo=None)) == AT  # a client without tz_aware
    with pytest.raises(TypeError):
        MONGO.read_instant("2026-09-01 05:12:30.468000")


def test_the_dev_server_keeps_epoch_milliseconds_and_reads_every_stored_form_back() -> None:
    assert NX.instant(AT) == 1_788_239_550_468
    assert NX.read_instant(NX.instant(AT)) == AT
    assert NX.read_instant("2026-09-01 05:12:30.468000") == AT
    assert NX.read_instant(AT.replace(tzinfo=None)) == AT


async def test_mongodb_any_of_is_one_query_with_or() -> None:
    things = Collection()
    await MONGO.any_of(things, [{"owner": "me"}, {"created_at": {"$lt": AT}}],
                       where={"status": "pending"}, sort="seq", limit=200)
    assert things.log == [
        ("find", {"status": "pending", "$or": [{"owner": "me"}, {"created_at": {"$lt": AT}}]},
         None),
        ("sort", "seq", 1), ("to_list", 200)]


async def test_the_dev_server_any_of_merges_one_query_per_alternative_in_order() -> None:
    a, b, c = ({"_id": x, "seq": n} for x, n in (("a", 1), ("b", 2), ("c", 3)))
    things = Collection({repr({"status": "pending", "owner": "me"}): [a, c],
                         repr({"status": "pending", "created_at": {"$lt": AT}}): [b, c]})
    found = await NX.any_of(things, [{"owner": "me"}, {"created_at": {"$lt": AT}}],
                            where={"status": "pending"}, sort="seq", limit=2)
    assert found == [a, b]
    assert [entry[1] for entry in things.log if entry[0] == "find"] == [
        {"status": "pending", "owner": "me"}, {"status": "pending", "created_at": {"$lt": AT}}]


def test_mongodb_matches_array_elements_by_equality() -> None:
    assert MONGO.has("guardian_ids", "acc_1") == {"guardian_ids": "acc_1"}
    assert NX.has("guardian_ids", "acc_1") == {"guardian_ids": {"$in": ["acc_1"]}}


def test_mongodb_upsert_replacements_leave_the_id_to_the_filter() -> None:
    assert MONGO.upsert_replacement("k", {"_id": "k", "v": 1}) == {"v": 1}
    assert MONGO.upsert_replacement("k", {"v": 1}) == {"v": 1}
    assert NX.upsert_replacement("k", {"v": 1}) == {"_id": "k", "v": 1}


def test_mongodb_projects_nested_fields() -> None:
    assert MONGO.projection("rules.concession_reminder_days") == {
        "rules.concession_reminder_days": 1}
    assert NX.projection("rules.concession_reminder_days") is None
    assert NX.projection("guardian_id") == {"guardian_id": 1}


async def test_mongodb_changes_a_ttl_with_coll_mod() -> None:
    things = Collection()
    await MONGO.change_expiry(things, {"name": "retention", "key": {"stored_at": 1}},
                              "stored_at", 60, "retention")
    assert things.log == [("command", {"collMod": "things", "index": {
        "name": "retention", "expireAfterSeconds": 60}})]


def test_write_conflicts_are_recognised_as_each_server_reports_them() -> None:
    labelled = OperationFailure("conflict", 112)
    unlabelled = OperationFailure("WriteConflict: another transaction holds the database")
    assert MONGO.is_write_conflict(labelled) and NX.is_write_conflict(labelled)
    assert not MONGO.is_write_conflict(unlabelled)
    assert NX.is_write_conflict(unlabelled)
    assert not NX.is_write_conflict(OperationFailure("duplicate key", 11000))
    assert not NX.is_write_conflict(ValueError("WriteConflict"))


def test_the_dialect_is_a_setting_mongodb_by_default_nx27017_on_the_dev_stack(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("SCHOOLCARD_MONGO_DIALECT", raising=False)
    assert InfraSettings(kafka_bootstrap="k:9092", mongo_uri="mongodb://m").mongo_dialect \
        == "mongodb"
    env = devstack.infra_env(9092, 27017, tmp_path)
    assert env["SCHOOLCARD_MONGO_DIALECT"] == "nx27017"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert InfraSettings().mongo_dialect == "nx27017"  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        InfraSettings(kafka_bootstrap="k", mongo_uri="m", mongo_dialect="sqlite")  # type: ignore[arg-type]


def test_use_selects_the_process_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialect, "_current", dialect.current())
    assert dialect.use("nx27017") is NX and dialect.current() is NX
    assert dialect.use("mongodb") is MONGO and dialect.current() is MONGO
    with pytest.raises(ValueError, match="unknown MongoDB dialect"):
        dialect.use("sqlite")
