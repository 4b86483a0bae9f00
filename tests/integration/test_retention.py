"""Retention: the runtime's one TTL helper and every service store's TTL indexes, on the real
dev server (nx-27017). A changed retention setting must apply to an existing database on the
next start, without the IndexOptionsConflict MongoDB raises when an index is re-created with
other options."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from services.runtime.mongo import DAY_S, STORED_AT, ensure_ttl_index
from tests.support import uid

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(mongo_uri: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    name = uid("retention")
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


async def ttl_of(collection: Any, field: str) -> list[int | None]:
    """The expiry of every index whose key is ``field`` alone (one expected)."""
    info = await collection.index_information()
    return [ix.get("expireAfterSeconds") for ix in info.values() if ix["key"] == [(field, 1)]]


async def test_the_ttl_helper_creates_the_index_then_changes_its_expiry_in_place(db) -> None:
    things = db.things
    await ensure_ttl_index(things, STORED_AT, 3 * DAY_S)
    assert await ttl_of(things, STORED_AT) == [3 * DAY_S]

    await ensure_ttl_index(things, STORED_AT, 3 * DAY_S)  # unchanged: nothing to do
    assert await ttl_of(things, STORED_AT) == [3 * DAY_S]

    await ensure_ttl_index(things, STORED_AT, 7 * DAY_S)  # a changed retention setting
    assert await ttl_of(things, STORED_AT) == [7 * DAY_S]

    await ensure_ttl_index(things, STORED_AT, 2 * DAY_S)  # and back down
    assert await ttl_of(things, STORED_AT) == [2 * DAY_S]


# (store module, retention settings, the same settings changed, collection -> (TTL field,
# setting that gives its days))
STORES = [
    ("access", {"attendance_retention_days": 400, "gate_tap_retention_days": 90},
     {"attendance_retention_days": 365, "gate_tap_retention_days": 30},
     {"access_days": (STORED_AT, "attendance_retention_days"),
      "access_taps": (STORED_AT, "gate_tap_retention_days")}),
    ("transit", {"ride_retention_days": 90}, {"ride_retention_days": 45},
     {"transit_rides": (STORED_AT, "ride_retention_days")}),
    ("notify", {"journal_retention_days": 180, "journey_retention_days": 90},
     {"journal_retention_days": 60, "journey_retention_days": 14},
     {"notify_messages": ("created_at", "journal_retention_days"),
      "notify_journeys": (STORED_AT, "journey_retention_days")}),
    ("auth", {"session_retention_days": 30, "login_throttle_retention_days": 1},
     {"session_retention_days": 7, "login_throttle_retention_days": 2},
     {"auth_sessions": (STORED_AT, "session_retention_days"),
      "auth_login_throttles": (STORED_AT, "login_throttle_retention_days")}),
]


@pytest.mark.parametrize(("service", "first", "changed", "ttls"), STORES,
                         ids=[s[0] for s in STORES])
async def test_each_store_expires_its_history_after_the_configured_days_and_follows_a_change(
        db, service: str, first: dict[str, int], changed: dict[str, int],
        ttls: dict[str, tuple[str, str]]) -> None:
    store = importlib.import_module(f"services.{service}.store")
    for retention in (first, changed):  # a restart with a changed setting, same database
        await store.ensure_indexes(db, **retention)
        for collection, (field, setting) in ttls.items():
            assert await ttl_of(db[collection], field) == [retention[setting] * DAY_S], \
                (collection, retention)


async def test_a_stored_document_carries_the_wall_clock_time_its_retention_counts_from(
        db) -> None:
    from services.auth.domain.common import LoginThrottle
    from services.auth.store import Store

    before = datetime.now(UTC)
    await Store(db).save_unknown_throttle("login-key", LoginThrottle())
    doc = await db.auth_login_throttles.find_one({"_id": "login-key"})
    assert isinstance(doc[STORED_AT], datetime)
    assert before - timedelta(seconds=1) <= doc[STORED_AT] <= datetime.now(UTC)
