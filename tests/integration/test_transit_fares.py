"""Transit end to end in-process, against the real broker and the real MongoDB-protocol server:
taps become rides with fares, duplicates change nothing, late and shuffled taps end with the
same net charge as in order (every over-charge refunded), wallet's decline puts the card on the
deny list and a settled debt lifts it, bad taps are dead-lettered with a reason, and staff set
rules and concessions through authorised commands.

Wallet is played by the test here (it publishes FareDeclined / DebtSettled as wallet would);
tests/system/test_transit_wallet.py runs the real wallet process."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import AsyncMongoClient

from contracts.auth import ChildGrant, Role
from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import Envelope
from contracts.integrations import CardIssued, ValidatorTapped
from contracts.transit import GetRides, SetConcession, SetFareRules
from contracts.types import GuardianRole
from contracts.wallet import (
    CardBlocked,
    CardUnblocked,
    DebtSettled,
    DeclineReason,
    FareDeclined,
)
from services.runtime.tokens import issue_access_token
from services.transit.domain import FareRulebook, Tap, parse_fare_rules, price_taps
from services.transit.settings import DEFAULT_RULES
from tests.support import (
    FakeClock,
    Integrator,
    Record,
    Requester,
    TopicReader,
    chip_uid,
    eventually,
    uid,
)

pytestmark = pytest.mark.integration

CITY = ZoneInfo("Europe/Samara")
OPERATOR = "izhevsk-gortrans"
EVENTS = "transit.events.v1"
TAPS = "integrations.validator-taps.v1"
# Friday 2026-03-06 23:00 local: the taps of the day below are all in the past.
NOW = datetime(2026, 3, 6, 19, 0, tzinfo=UTC)
RULES: FareRulebook = parse_fare_rules(json.loads(DEFAULT_RULES.read_text()))[OPERATOR]


def contract() -> str:
    return f"{random.randrange(10**7, 10**8)}"


def card_uid() -> str:
    return chip_uid()


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CITY).astimezone(UTC)


def tap(card: str, tap_id: str, when: str, route: str, *, offline: bool = False,
        mode: str = "bus") -> ValidatorTapped:
    return ValidatorTapped(tap_id=tap_id, validator_id=f"val-{route}", vehicle_id=f"bus-{route}",
                           operator_id=OPERATOR, route=route, mode=mode,
                           stop_id="stop-central-square", card_uid=card,
                           tapped_at=local(when), offline=offline)


async def distinct(reader: TopicReader, predicate: Callable[[Record], bool], *,
                   count: int = 1) -> list[Record]:
    """Matching records with distinct message ids (delivery is at least once: the relay or
    the producer may publish a record twice, with the same id)."""
    async def check() -> list[Record] | None:
        await reader.poll()
        found = {r.headers["ce_id"]: r for r in reader.records if predicate(r)}
        return list(found.values()) if len(found) >= count else None

    return await eventually(check, what=f"{count} distinct record(s) on {reader.topic}")


def totals(records: list[Any], key: str) -> tuple[int, int]:
    """(debits, refunds) on the events topic for one contract (distinct message ids)."""
    seen: dict[str, Any] = {r.headers["ce_id"]: r for r in records if r.key == key}
    assessed = sum(r.json()["amount"] for r in seen.values() if r.type.endswith("FareAssessed"))
    refunded = sum(r.json()["refund"] for r in seen.values() if r.type.endswith("FareCorrected"))
    return assessed, refunded


@pytest.fixture(scope="module")
async def transit(service_runner, bootstrap, mongo_uri) -> AsyncIterator[dict[str, Any]]:
    clock = FakeClock(NOW)
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_uri, tz_aware=True)
    async with service_runner("transit", clock=clock, reminder_every_s=0.5), \
            Integrator(bootstrap) as integrator, TopicReader(bootstrap, EVENTS) as events:
        yield {"clock": clock, "integrator": integrator, "events": events,
               "db": client.schoolcard_transit}
    await client.close()


async def issue(env: dict[str, Any]) -> tuple[str, str]:
    """A new card, published and projected by transit (taps for it are then accepted)."""
    c, uid_ = contract(), card_uid()
    await env["integrator"].publish(
        CardIssued(contract=c, card_uid=uid_, school_id="izh-school-42",
                   school_tz="Europe/Samara", student_id=uid("stu"), class_name="5Б",
                   birth_date=date(2014, 3, 8), issued_at=NOW - timedelta(days=30)), c)
    await eventually(lambda: env["db"].transit_cards.find_one({"_id": uid_}),
                     what="card projected")
    return c, uid_


async def test_the_same_tap_delivered_twice_records_one_ride_and_one_fare_to_debit(transit):
    c, card = await issue(transit)
    ride = tap(card, uid("tap"), "2026-03-04 07:40", "29")
    env = await transit["integrator"].publish(ride, card)
    await transit["integrator"].publish(ride, card, envelope=env)  # redelivery: same message
    await transit["integrator"].publish(ride, card)  # the validator re-sent it: new message id
    assessed = await transit["events"].wait_for(
        lambda r: r.key == c and r.type.endswith("FareAssessed"), count=2)
    recorded = await transit["events"].wait_for(
        lambda r: r.key == c and r.type.endswith("RideRecorded"), count=2)
    assert {r.headers["ce_id"] for r in assessed} == {assessed[0].headers["ce_id"]}
    assert {r.headers["ce_id"] for r in recorded} == {recorded[0].headers["ce_id"]}
    assert assessed[0].json()["amount"] == 3_500  # the full bus fare of the 2026 rules
    assert await transit["db"].transit_rides.count_documents({"contract": c}) == 1
    travel = await transit["db"].transit_travel.find_one({"_id": f"{OPERATOR}:{card}"})
    assert travel["debited_total"] == 3_500


async def test_a_day_of_taps_shuffled_with_late_uploads_nets_the_same_as_in_order_and_every_correction_is_refunded(  # noqa: E501
        transit):
    run = uid("day")
    day = [("07:30", "29"), ("07:50", "12"), ("13:00", "29"), ("13:20", "12"),
           ("15:00", "7"), ("17:00", "29"), ("18:30", "12"), ("20:00", "7")]
    (c_in, card_in), (c_late, card_late) = await issue(transit), await issue(transit)
    in_order = [tap(card_in, f"{run}-a{i}", f"2026-03-04 {t}", route)
                for i, (t, route) in enumerate(day)]
    # Online taps of the afternoon first (newest first), then the morning's offline validator
    # uploads its taps at the end of the day.
    online = [tap(card_late, f"{run}-b{i}", f"2026-03-04 {t}", route)
              for i, (t, route) in enumerate(day) if i >= 4]
    offline = [tap(card_late, f"{run}-b{i}", f"2026-03-04 {t}", route, offline=True)
               for i, (t, route) in enumerate(day) if i < 4]
    shuffled = list(reversed(online)) + random.Random(3).sample(offline, len(offline))
    for t in in_order:
        await transit["integrator"].publish(t, card_in)
    for t in shuffled:
        await transit["integrator"].publish(t, card_late)

    db = transit["db"]

    async def settled(card: str, contract_: str) -> int | None:
        travel = await db.transit_travel.find_one({"_id": f"{OPERATOR}:{card}"})
        if travel is None or len(travel["rides"]) < len(day):
            return None
        # A late tap can debit X and refund X in one go: compare both sums, not only the net.
        expected = travel["debited_total"], travel["refunded_total"]
        await transit["events"].poll()
        if totals(transit["events"].records, contract_) != expected:
            return None
        return expected[0] - expected[1]

    net_in = await eventually(lambda: settled(card_in, c_in), what="in-order card settled")
    net_late = await eventually(lambda: settled(card_late, c_late), what="late card settled")
    reference = sum(p.fare for p in price_taps(
        [Tap(t.tap_id, t.validator_id, t.vehicle_id, t.route, t.mode.value, t.stop_id, card_in,
             t.tapped_at) for t in in_order], RULES, None))
    assert net_in == net_late == reference == 10_500  # three journeys, then the daily cap

    late_records = [r for r in transit["events"].records if r.key == c_late]
    corrections = {r.headers["ce_id"]: r.json() for r in late_records
                   if r.type.endswith("FareCorrected")}
    travel = await db.transit_travel.find_one({"_id": f"{OPERATOR}:{card_late}"})
    assert corrections, "the late uploads must have repriced charged rides"
    assert sum(c["refund"] for c in corrections.values()) == travel["refunded_total"]
    assert len({c["correction_id"] for c in corrections.values()}) == len(corrections)
    corrected = await db.transit_rides.count_documents(
        {"contract": c_late, "explanation": "corrected_late_upload"})
    assert corrected >= len(corrections)


async def test_a_declined_fare_puts_the_card_on_the_deny_list_and_a_settled_debt_lifts_it(
        transit, bootstrap):
    c, card = await issue(transit)
    ride_id = uid("tap")
    await transit["integrator"].publish(tap(card, ride_id, "2026-03-05 08:00", "29"), card)
    [assessed] = await distinct(transit["events"],
                                lambda r: r.key == c and r.type.endswith("FareAssessed"))
    wallet = Integrator(bootstrap, source="wallet")
    async with wallet, TopicReader(bootstrap, "transit.deny-list.v1") as deny_list:
        await wallet.publish(FareDeclined(contract=c, ride_id=ride_id,
                                          amount=assessed.json()["amount"],
                                          reason=DeclineReason.INSUFFICIENT_FUNDS,
                                          declined_at=NOW), c)
        [denied] = await distinct(deny_list, lambda r: r.key == card)
        await wallet.publish(DebtSettled(contract=c, settled_at=NOW), c)
        entries = await distinct(deny_list, lambda r: r.key == card, count=2)
    assert denied.json()["denied"] is True and denied.json()["debt"] == 3_500
    assert entries[-1].json()["denied"] is False and entries[-1].json()["debt"] == 0


async def test_a_lost_card_goes_on_the_deny_list_and_a_fare_declined_for_it_is_no_debt(
        transit, bootstrap):
    """Wallet's CardBlocked reaches the validators at once (a card that never rode too); a
    fare wallet declined because the card was blocked is no debt, so unblocking lifts it."""
    c, card = await issue(transit)
    c_idle, card_idle = await issue(transit)
    ride_id = uid("tap")
    await transit["integrator"].publish(tap(card, ride_id, "2026-03-05 08:00", "29"), card)
    [assessed] = await distinct(transit["events"],
                                lambda r: r.key == c and r.type.endswith("FareAssessed"))
    wallet = Integrator(bootstrap, source="wallet")
    async with wallet, TopicReader(bootstrap, "transit.deny-list.v1") as deny_list:
        for contract_number in (c, c_idle):
            await wallet.publish(CardBlocked(contract=contract_number, by_account=None,
                                             blocked_at=NOW), contract_number)
        [blocked] = await distinct(deny_list, lambda r: r.key == card)
        [blocked_idle] = await distinct(deny_list, lambda r: r.key == card_idle)
        await wallet.publish(FareDeclined(contract=c, ride_id=ride_id,
                                          amount=assessed.json()["amount"],
                                          reason=DeclineReason.CARD_BLOCKED,
                                          declined_at=NOW), c)
        await wallet.publish(CardUnblocked(contract=c, by_account=None, unblocked_at=NOW), c)
        entries = await distinct(deny_list, lambda r: r.key == card, count=2)
    assert blocked.json()["denied"] is True and blocked.json()["blocked"] is True
    assert blocked_idle.json()["denied"] is True
    assert entries[-1].json()["denied"] is False, "the blocked-card decline was no debt"


async def test_malformed_and_impossible_taps_are_dead_lettered_with_a_reason_and_the_next_tap_is_priced(  # noqa: E501
        transit, bootstrap):
    c, card = await issue(transit)
    good = tap(card, uid("tap"), "2026-03-05 09:00", "29")
    cases = {
        "not_json": (b"{not json", Envelope.new(good, source="integrator:validator")),
        "schema_violation": (json.dumps({**json.loads(good.model_dump_json()),
                                         "mode": "rocket"}).encode(),
                             Envelope.new(good, source="integrator:validator")),
    }
    bad_taps = {
        "unknown_card": tap(card_uid(), uid("tap"), "2026-03-05 09:00", "29"),
        "tap_in_future": tap(card, uid("tap"), "2026-03-08 09:00", "29"),
        "week_closed": tap(card, uid("tap"), "2026-01-05 09:00", "29"),
        "unknown_operator": good.model_copy(update={"tap_id": uid("tap"),
                                                    "operator_id": "atlantis"}),
        "mode_not_served": tap(card, uid("tap"), "2026-03-05 09:10", "M1", mode="metro"),
    }
    integrator = transit["integrator"]
    async with TopicReader(bootstrap, "transit.dead-letter.v1") as dlq:
        for value, env in cases.values():
            await integrator.publish_raw(TAPS, value, card, env.to_headers())
        for bad in bad_taps.values():
            await integrator.publish(bad, card)
        await integrator.publish(good, card)
        dead = await distinct(dlq, lambda r: r.key == card, count=len(cases) + len(bad_taps))
        await transit["events"].wait_for(
            lambda r: r.key == c and r.json().get("ride_id") == good.tap_id)
    codes = sorted(r.headers[DLQ_CODE] for r in dead)
    assert codes == sorted([*cases, *bad_taps])
    assert all(r.headers[DLQ_REASON] for r in dead)
    assert await transit["db"].transit_rides.count_documents({"contract": c}) == 1


def token(infra: dict[str, str], role: Role, **claims: Any) -> str:
    return issue_access_token(infra["AUTH_PRIVATE_KEY"], account_id=f"acc_{uid('a')[2:]}",
                              session_id=uid("s"), role=role, now=NOW.timestamp(), **claims)


async def test_staff_set_rules_and_concessions_parents_read_their_childs_rides_and_others_are_refused(  # noqa: E501
        transit, bootstrap, infra):
    c, card = await issue(transit)
    parent = token(infra, Role.PARENT, children=[ChildGrant(contract=c,
                                                            role=GuardianRole.PRIMARY)])
    stranger = token(infra, Role.PARENT)
    admin = token(infra, Role.SCHOOL_ADMIN, school_id="izh-school-42")
    support = token(infra, Role.SUPPORT)
    rules = RULES.to_doc()
    async with Requester(bootstrap) as app:
        refused = await app.send(SetFareRules(request_id=uid("r"), operator_id=OPERATOR,
                                              version=1, rules=rules), OPERATOR, token=parent)
        broken = await app.send(SetFareRules(request_id=uid("r"), operator_id=OPERATOR,
                                             version=1, rules={**rules, "time_zone": "Mars/Base"}),
                                OPERATOR, token=support)
        # The concession ends in 4 days: within the 7-day reminder period.
        granted = await app.send(SetConcession(request_id=uid("r"), contract=c,
                                               valid_until="2026-03-10"), c, token=admin)
        await transit["integrator"].publish(tap(card, uid("tap"), "2026-03-06 08:00", "29"), card)
        [ride] = await distinct(transit["events"],
                                lambda r: r.key == c and r.type.endswith("RideRecorded"))
        [reminder] = await distinct(
            transit["events"], lambda r: r.key == c and r.type.endswith("ConcessionExpiring"))
        rides = await app.send(GetRides(contract=c, date_from="2026-03-06", csv=True), c,
                               token=parent)
        others = await app.send(GetRides(contract=c), c, token=stranger)
    assert refused.json()["error"]["code"] == "forbidden"
    assert broken.json()["error"]["code"] == "invalid_rules"
    assert granted.json()["ok"] is True
    assert ride.json()["fare"] == 1_750 and ride.json()["explanation"] == "concession"
    assert reminder.json() == {"contract": c, "valid_until": "2026-03-10", "days_left": 4}
    reply = rides.json()
    assert [line["fare"] for line in reply["rides"]] == [1_750]
    assert "льготный тариф" in reply["csv"] and "06.03.2026 08:00" in reply["csv"]
    assert others.json()["error"]["code"] == "forbidden"


async def test_a_card_with_a_concession_that_never_rode_is_reminded_too(transit, bootstrap,
                                                                         infra):
    c, card = await issue(transit)
    admin = token(infra, Role.SCHOOL_ADMIN, school_id="izh-school-42")
    async with Requester(bootstrap) as app:
        # Ends in 3 days (local Friday 23:00 now): within the 7-day reminder period.
        granted = await app.send(SetConcession(request_id=uid("r"), contract=c,
                                               valid_until="2026-03-09"), c, token=admin)
    assert granted.json()["ok"] is True
    [reminder] = await distinct(
        transit["events"], lambda r: r.key == c and r.type.endswith("ConcessionExpiring"))
    assert reminder.json() == {"contract": c, "valid_until": "2026-03-09", "days_left": 3}
    assert await transit["db"].transit_travel.count_documents({"card_uid": card}) == 0
    stored = await transit["db"].transit_cards.find_one({"_id": card})
    assert stored["concession_reminded_for"] == "2026-03-09"  # so never twice


@pytest.mark.slow
async def test_two_hundred_taps_of_twenty_cards_are_priced_within_a_minute(transit):
    import time

    cards = [await issue(transit) for _ in range(20)]
    run = uid("load")
    taps = [(c, tap(card, f"{run}-{n}-{i}", f"2026-03-03 {7 + i:02d}:{(n * 7) % 60:02d}",
                    ("29", "12")[i % 2]))
            for n, (c, card) in enumerate(cards) for i in range(10)]
    started = time.perf_counter()
    for _, t in taps:
        await transit["integrator"].publish(t, t.card_uid)
    contracts = list({c for c, _ in taps})
    rides = transit["db"].transit_rides

    async def all_priced() -> bool:
        return await rides.count_documents({"contract": {"$in": contracts}}) == len(taps)

    await eventually(all_priced, timeout=60, interval=0.5, what="every tap priced")
    elapsed = time.perf_counter() - started
    print(f"transit: {len(taps)} taps priced end to end in {elapsed:.1f}s "
          f"({len(taps) / elapsed:.0f} taps/s)")
    assert elapsed < 60


async def test_a_childs_rides_page_with_a_cursor_into_the_whole_list(transit, bootstrap, infra):
    c, card = await issue(transit)
    parent = token(infra, Role.PARENT, children=[ChildGrant(contract=c,
                                                            role=GuardianRole.PRIMARY)])
    for minute in range(7):
        await transit["integrator"].publish(
            tap(card, uid("tap"), f"2026-03-04 07:{10 + minute * 5:02d}", "29"), card)
    await distinct(transit["events"],
                   lambda r: r.key == c and r.type.endswith("RideRecorded"), count=7)
    async with Requester(bootstrap) as app:
        whole = (await app.send(GetRides(contract=c, limit=500), c, token=parent)).json()
        pages, cursor = [], None
        while True:
            reply = (await app.send(GetRides(contract=c, limit=3, cursor=cursor), c,
                                    token=parent)).json()
            pages.append(reply["rides"])
            if (cursor := reply["next_cursor"]) is None:
                break
        garbage = (await app.send(GetRides(contract=c, cursor="bm90IGEgY3Vyc29y"), c,
                                  token=parent)).json()
    assert len(whole["rides"]) == 7 and whole["next_cursor"] is None
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [r for p in pages for r in p] == whole["rides"]
    assert [r["tapped_at"] for r in whole["rides"]] == sorted(r["tapped_at"]
                                                                for r in whole["rides"])
    assert garbage["error"]["code"] == "invalid_cursor"
