"""The school pass through the real broker and MongoDB-protocol server: every deny reason reaches
the gate, a retried tap gets the same decision and is recorded once, a wallet block denies the
card and shows on the compacted allow-list, and taps that cannot be decided are dead-lettered
with a reason. access runs in-process with a fake clock (a Monday two weeks ago, 08:00 local)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.access import DayHours, SessionSlot, SetSchoolSchedule
from contracts.auth import Role
from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import Envelope
from contracts.integrations import CardIssued, GateTapped
from contracts.wallet import CardBlocked, CardUnblocked
from services.runtime.tokens import issue_access_token
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.integration

ZONE_NAME = "Europe/Samara"
ZONE = ZoneInfo(ZONE_NAME)
TAPS = "integrations.gate-taps.v1"
DAY = date.today() - timedelta(days=date.today().weekday() + 14)  # a Monday two weeks ago


def local(hhmm: str, day: date = DAY) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=ZONE).astimezone(UTC)


def school() -> str:
    return f"gate-{uid('s')[2:].lower()}"


def new_card(school_id: str, class_name: str = "5A") -> CardIssued:
    return CardIssued(contract=f"{random.randrange(10**7, 10**8)}",
                      card_uid=chip_uid(), school_id=school_id,
                      school_tz=ZONE_NAME, student_id=uid("stu"), class_name=class_name,
                      birth_date=date(2014, 3, 8), issued_at=local("06:00") - timedelta(days=3))


def tap(card: CardIssued, at: datetime, direction: str = "in", gate: str = "gate-1",
        school_id: str | None = None) -> GateTapped:
    return GateTapped(tap_id=uid("tap"), gate_id=gate, school_id=school_id or card.school_id,
                      card_uid=card.card_uid, direction=direction, tapped_at=at)


def schedule(school_id: str) -> SetSchoolSchedule:
    return SetSchoolSchedule(
        request_id=uid("sched"), school_id=school_id, time_zone=ZONE_NAME,
        hours=[DayHours(weekday=w, opens="07:00", closes="19:00", first_lesson="08:30")
               for w in range(5)],
        absence_cutoff="10:00",
        sessions=[SessionSlot(name="Уроки", weekday=w, start="08:30", end="13:50")
                  for w in range(5)])


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock(local("08:00"))


@pytest.fixture(scope="module")
async def access(service_runner: Any, clock: FakeClock) -> AsyncIterator[Any]:
    async with service_runner("access", clock=clock, sweep_interval_s=0.5) as svc:
        yield svc


@pytest.fixture
async def io(access: Any, bootstrap: str, infra: dict[str, str],
             clock: FakeClock) -> AsyncIterator[dict[str, Any]]:
    async with Integrator(bootstrap) as integrator, Requester(bootstrap) as requester, \
            TopicReader(bootstrap, "access.gate-decisions.v1") as decisions, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow_list:
        yield {"pub": integrator, "req": requester, "decisions": decisions,
               "allow": allow_list, "key": infra["AUTH_PRIVATE_KEY"], "clock": clock}


def admin_token(io: dict[str, Any], school_id: str) -> str:
    return issue_access_token(io["key"], account_id=f"acc_{uid('a')[2:]}", session_id=uid("s"),
                              role=Role.SCHOOL_ADMIN, school_id=school_id,
                              now=io["clock"].now.timestamp())


async def set_schedule(io: dict[str, Any], school_id: str) -> None:
    reply = await io["req"].send(schedule(school_id), school_id,
                                 token=admin_token(io, school_id))
    assert reply.json()["ok"] is True, reply.json()


async def issue(io: dict[str, Any], *cards: CardIssued) -> None:
    for card in cards:
        await io["pub"].publish(card, card.contract)
    uids = {c.card_uid for c in cards}
    async def all_listed() -> bool:
        return {r.key for r in await io["allow"].poll()} >= uids
    await eventually(all_listed, what="allow-list entries of the new cards")


async def decide(io: dict[str, Any], *taps: GateTapped) -> dict[str, dict[str, Any]]:
    for t in taps:
        await io["pub"].publish(t, t.card_uid)
    ids = {t.tap_id for t in taps}

    async def all_decided() -> dict[str, dict[str, Any]] | None:
        # Distinct tap ids: the outbox relay publishes at least once, so copies may repeat.
        found = {r.json()["tap_id"]: r.json() for r in await io["decisions"].poll()
                 if r.json()["tap_id"] in ids}
        return found if len(found) == len(ids) else None
    return await eventually(all_decided, what="a decision for every tap")


async def test_every_deny_reason_is_published_to_the_gate_with_its_reason(io, mongo_db):
    here, elsewhere, unscheduled = school(), school(), school()
    await set_schedule(io, here)
    await set_schedule(io, elsewhere)
    ok, blocked, foreign, stranger = new_card(here), new_card(here), new_card(elsewhere), \
        new_card(here)
    lonely = new_card(unscheduled)
    await issue(io, ok, blocked, foreign, lonely)
    await io["pub"].publish(CardBlocked(contract=blocked.contract, by_account=None,
                                        blocked_at=local("07:00")), blocked.contract)
    await io["allow"].wait_for(lambda r: r.key == blocked.card_uid and not r.json()["allowed"])

    first_in = tap(ok, local("07:50"))
    taps = {
        "ok": first_in,
        "unknown_card": tap(stranger, local("07:50")),
        "card_blocked": tap(blocked, local("07:51")),
        "other_school": tap(foreign, local("07:51"), school_id=here),
        "no_schedule": tap(lonely, local("07:52")),
        "outside_schedule": tap(ok, local("06:30")),  # gates open at 07:00
    }
    decided = await decide(io, *taps.values())
    again = tap(ok, local("07:55"))  # a second entry without an exit
    decided |= await decide(io, again)
    taps["anti_passback"] = again

    for expected, t in taps.items():
        decision = decided[t.tap_id]
        assert decision["gate_id"] == t.gate_id
        if expected == "ok":
            assert decision["allowed"] is True and decision["reason"] is None
        else:
            assert decision["allowed"] is False, expected
            assert decision["reason"] == expected
    gate_keys = {r.key for r in io["decisions"].records if r.json()["tap_id"] in decided}
    assert gate_keys == {"gate-1"}  # keyed by gate


async def test_a_retried_tap_gets_the_same_decision_and_is_recorded_once(io, mongo_db):
    here = school()
    await set_schedule(io, here)
    card = new_card(here)
    await issue(io, card)
    first = tap(card, local("07:40"))
    env = await io["pub"].publish(first, card.card_uid)
    await io["pub"].publish(first, card.card_uid, envelope=env)  # the broker redelivered
    await io["pub"].publish(first, card.card_uid)  # the controller retried: new message id
    sentinel = tap(card, local("07:45"), direction="out")  # same key: decided after the above
    await io["pub"].publish(sentinel, card.card_uid)
    await io["decisions"].wait_for(lambda r: r.json()["tap_id"] == sentinel.tap_id)

    answers = [r for r in io["decisions"].records if r.json()["tap_id"] == first.tap_id]
    # The retry is answered again; the relay publishes at least once, so a gate may see an
    # answer twice, but every copy is the same message (same id, same bytes).
    assert {r.headers["ce_causationid"] for r in answers} >= {env.id}
    assert len({r.headers["ce_causationid"] for r in answers}) == 2
    assert len({r.headers["ce_id"] for r in answers}) == 1
    assert len({r.value for r in answers}) == 1
    assert answers[0].json()["allowed"] is True
    assert await mongo_db.access_taps.count_documents({"_id": first.tap_id}) == 1
    day = await mongo_db.access_days.find_one({"_id": f"{card.contract}:{DAY.isoformat()}"})
    assert [p["passage_id"] for p in day["passages"]] == [first.tap_id, sentinel.tap_id]


async def test_a_card_blocked_by_wallet_is_denied_at_once_and_the_allow_list_shows_it(io):
    here = school()
    await set_schedule(io, here)
    card = new_card(here)
    await issue(io, card)
    entered = await decide(io, tap(card, local("07:30")))
    assert next(iter(entered.values()))["allowed"] is True

    await io["pub"].publish(CardBlocked(contract=card.contract, by_account=None, reason="lost",
                                        blocked_at=local("07:35")), card.contract)
    [entry] = await io["allow"].wait_for(
        lambda r: r.key == card.card_uid and r.json()["allowed"] is False)
    assert entry.json()["reason"] == "card_blocked"
    assert entry.json()["school_id"] == here
    denied = await decide(io, tap(card, local("07:36"), direction="out"))
    assert next(iter(denied.values()))["reason"] == "card_blocked"

    unblock = await io["pub"].publish(CardUnblocked(contract=card.contract, by_account=None,
                                                    unblocked_at=local("07:40")), card.contract)
    [entry] = await io["allow"].wait_for(
        lambda r: r.headers.get("ce_causationid") == unblock.id, timeout=30)
    assert entry.key == card.card_uid and entry.json()["allowed"] is True
    allowed = await decide(io, tap(card, local("07:41"), direction="out"))
    assert next(iter(allowed.values()))["allowed"] is True


async def test_malformed_future_and_ancient_taps_are_dead_lettered_with_a_reason(io, bootstrap):
    here = school()
    card = new_card(here)
    now = io["clock"].now
    future = tap(card, now + timedelta(minutes=10))
    ancient = tap(card, now - timedelta(days=8))
    key = card.card_uid
    async with TopicReader(bootstrap, "access.dead-letter.v1") as dlq:
        await io["pub"].publish(future, key)
        await io["pub"].publish(ancient, key)
        headers = Envelope.new(future, source="integrator:turnstile").to_headers()
        await io["pub"].publish_raw(TAPS, b'{"tap_id": ', key, headers)
        broken = future.model_dump(mode="json") | {"tapped_at": "2026-09-01T08:00:00",
                                                    "card_uid": "not-hex"}
        await io["pub"].publish_raw(TAPS, json.dumps(broken).encode(), key,
                                    Envelope.new(future, source="t").to_headers())
        dead = await dlq.wait_for(lambda r: r.key == key, count=4)
    by_code = {r.headers[DLQ_CODE]: r for r in dead}
    assert set(by_code) == {"future_time", "too_old", "not_json", "schema_violation"}
    assert "after now" in by_code["future_time"].headers[DLQ_REASON]
    assert "tapped_at" in by_code["schema_violation"].headers[DLQ_REASON]
    assert "card_uid" in by_code["schema_violation"].headers[DLQ_REASON]
    assert by_code["not_json"].value == b'{"tap_id": '
    await io["decisions"].poll()
    assert not [r for r in io["decisions"].records
                if r.json()["tap_id"] in {future.tap_id, ancient.tap_id}]


@pytest.fixture
async def mongo_db(mongo_uri: str) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, tz_aware=True)
    yield client.schoolcard_access
    await client.close()


async def test_a_burst_with_a_refused_tap_inside_is_decided_once_per_tap_and_in_order(
        io, bootstrap, mongo_db):
    """A morning rush arrives in batches (one transaction each): the tap refused in the middle
    of a batch is dead-lettered alone, every other tap is decided once, and each child's
    passages keep the order of their taps."""
    from services.runtime import metrics

    here = school()
    await set_schedule(io, here)
    cards = [new_card(here) for _ in range(8)]
    await issue(io, *cards)
    batches = metrics.BATCH_SIZE.labels("access")
    splits = metrics.RETRIES.labels("access", "batch_split")
    before = (batches._sum.get(), sum(b.get() for b in batches._buckets), splits._value.get())
    taps = [tap(card, local(f"07:{10 + minute:02d}"), direction=("in", "out")[minute % 2])
            for minute in range(6) for card in cards]
    refused = tap(cards[3], io["clock"].now + timedelta(minutes=10))
    async with TopicReader(bootstrap, "access.dead-letter.v1") as dlq:
        for n, t in enumerate(taps):
            await io["pub"].publish(t, t.card_uid)
            if n == len(taps) // 2:
                await io["pub"].publish(refused, refused.card_uid)
        [dead] = await dlq.wait_for(lambda r: r.key == refused.card_uid)
    assert dead.headers[DLQ_CODE] == "future_time"
    ids = {t.tap_id for t in taps}

    async def all_decided() -> bool:
        await io["decisions"].poll()
        return {r.json()["tap_id"] for r in io["decisions"].records} >= ids
    await eventually(all_decided, what="a decision for every tap of the burst")
    answers = [r for r in io["decisions"].records if r.json()["tap_id"] in ids]
    assert len({r.headers["ce_id"] for r in answers}) == len(ids)  # one decision per tap
    assert all(r.json()["allowed"] for r in answers)
    assert await mongo_db.access_taps.count_documents({"_id": {"$in": list(ids)}}) == len(ids)
    for card in cards:
        day = await mongo_db.access_days.find_one({"_id": f"{card.contract}:{DAY.isoformat()}"})
        assert [p["passage_id"] for p in day["passages"]] == \
            [t.tap_id for t in taps if t.card_uid == card.card_uid]
    messages = batches._sum.get() - before[0]
    transactions = sum(b.get() for b in batches._buckets) - before[1]
    assert transactions < messages, "the burst was applied in batches"
    assert splits._value.get() > before[2], "the refused tap was met inside a batch"
