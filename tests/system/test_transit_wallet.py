"""Transit and wallet as their own processes: a day of taps delivered shuffled with late offline
uploads is charged exactly the in-order price, wallet applies every refund exactly once (a
redelivered correction changes nothing), and a card wallet cannot charge lands on the deny list
and leaves it after a top-up that pays the declined fare (wallet's DebtSettled)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.integrations import CardIssued, TopUpReceived, ValidatorTapped
from tests.support import Integrator, Record, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.system

CITY = ZoneInfo("Europe/Samara")
OPERATOR = "izhevsk-gortrans"
DAY = [("07:30", "29"), ("07:50", "12"), ("13:00", "29"), ("13:20", "12"),
       ("15:00", "7"), ("17:00", "29"), ("18:30", "12"), ("20:00", "7")]


def yesterday_at(hhmm: str) -> datetime:
    day = datetime.now(CITY).date() - timedelta(days=1)
    return datetime.fromisoformat(f"{day} {hhmm}").replace(tzinfo=CITY).astimezone(UTC)


def new_card() -> CardIssued:
    contract = f"{random.randrange(10**7, 10**8)}"
    return CardIssued(contract=contract, card_uid=chip_uid(),
                      school_id="izh-school-42", school_tz="Europe/Samara",
                      student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
                      issued_at=datetime.now(UTC) - timedelta(days=30))


def tap(card: CardIssued, tap_id: str, hhmm: str, route: str, offline: bool = False
        ) -> ValidatorTapped:
    return ValidatorTapped(tap_id=tap_id, validator_id=f"val-{route}", vehicle_id=f"bus-{route}",
                           operator_id=OPERATOR, route=route, mode="bus", stop_id="stop-lenina",
                           card_uid=card.card_uid, tapped_at=yesterday_at(hhmm), offline=offline)


def distinct(records: list[Record], key: str, suffix: str) -> dict[str, Any]:
    return {r.headers["ce_id"]: r.json() for r in records
            if r.key == key and r.type.endswith(suffix)}


async def open_cards(integrator: Integrator, mongo: Any, *cards: CardIssued) -> None:
    for card in cards:
        await integrator.publish(card, card.contract)
    contracts = [c.contract for c in cards]
    uids = [c.card_uid for c in cards]
    await eventually(lambda: asyncio.to_thread(lambda: (
        mongo.schoolcard_wallet.wallet_accounts.count_documents({"_id": {"$in": contracts}})
        == len(cards)
        and mongo.schoolcard_transit.transit_cards.count_documents({"_id": {"$in": uids}})
        == len(cards))), timeout=60, what="cards opened in wallet and transit")


async def test_late_taps_cost_the_in_order_price_wallet_refunds_each_correction_once_and_a_broke_card_is_denied_until_topped_up(  # noqa: E501
        start_service, bootstrap, mongo):
    start_service("wallet")
    start_service("transit")
    rider, broke = new_card(), new_card()
    run = uid("day")
    online = [tap(rider, f"{run}-{i}", t, r) for i, (t, r) in enumerate(DAY) if i >= 4]
    offline = [tap(rider, f"{run}-{i}", t, r, offline=True) for i, (t, r) in enumerate(DAY)
               if i < 4]
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "transit.events.v1") as transit_events, \
            TopicReader(bootstrap, "wallet.events.v1") as wallet_events, \
            TopicReader(bootstrap, "transit.deny-list.v1") as deny_list:
        await open_cards(integrator, mongo, rider, broke)
        await integrator.publish(TopUpReceived(payment_id=uid("pay"), contract=rider.contract,
                                               amount=500_00, channel="terminal",
                                               paid_at=datetime.now(UTC)), rider.contract)
        await wallet_events.wait_for(
            lambda r: r.key == rider.contract and r.type.endswith("TopUpApplied"), timeout=60)
        for t in [*reversed(online), *random.Random(5).sample(offline, len(offline))]:
            await integrator.publish(t, rider.card_uid)
        await integrator.publish(tap(broke, uid("tap"), "08:00", "29"), broke.card_uid)

        async def settled() -> dict[str, Any] | None:
            await transit_events.poll()
            await wallet_events.poll()
            assessed = distinct(transit_events.records, rider.contract, "FareAssessed")
            corrected = distinct(transit_events.records, rider.contract, "FareCorrected")
            debited = distinct(wallet_events.records, rider.contract, "FareDebited")
            refunded = distinct(wallet_events.records, rider.contract, "FareRefunded")
            rides = distinct(transit_events.records, rider.contract, "RideRecorded")
            travel = await asyncio.to_thread(
                mongo.schoolcard_transit.transit_travel.find_one,
                {"_id": f"{OPERATOR}:{rider.card_uid}"})
            # Both sums, not only the net: one late tap can debit X and refund X together.
            done = (len(rides) == len(DAY) and travel is not None
                    and sum(a["amount"] for a in assessed.values()) == travel["debited_total"]
                    and sum(c["refund"] for c in corrected.values()) == travel["refunded_total"]
                    and len(debited) == len(assessed) and len(refunded) == len(corrected))
            return {"assessed": assessed, "corrected": corrected, "debited": debited,
                    "refunded": refunded} if done else None

        seen = await eventually(settled, timeout=90, what="every fare debited and refunded")
        # A redelivered correction (the relay published it again) is applied once.
        again = next(r for r in transit_events.records
                     if r.key == rider.contract and r.type.endswith("FareCorrected"))
        await integrator.publish_raw("transit.events.v1", again.value, rider.contract,
                                     again.headers)
        [denied] = await deny_list.wait_for(lambda r: r.key == broke.card_uid, timeout=60)
        await integrator.publish(TopUpReceived(payment_id=uid("pay"), contract=broke.contract,
                                               amount=100_00, channel="terminal",
                                               paid_at=datetime.now(UTC)), broke.contract)
        entries = await deny_list.wait_for(
            lambda r: r.key == broke.card_uid and not r.json()["denied"], timeout=60)
        [debt_settled] = await wallet_events.wait_for(
            lambda r: r.key == broke.contract and r.type.endswith("DebtSettled"), timeout=60)

    net = (sum(a["amount"] for a in seen["assessed"].values())
           - sum(c["refund"] for c in seen["corrected"].values()))
    assert net == 10_500  # the in-order price: three journeys, then the daily cap
    assert seen["corrected"], "the late uploads must have repriced charged rides"
    assert sorted(r["correction_id"] for r in seen["refunded"].values()) == sorted(
        c["correction_id"] for c in seen["corrected"].values())

    def wallet_state() -> tuple[int, int]:
        account = mongo.schoolcard_wallet.wallet_accounts.find_one({"_id": rider.contract})
        balances = account["balances_by_sub"]
        refunds = mongo.schoolcard_wallet.wallet_ledger.count_documents(
            {"account": rider.contract, "operation_id": again.json()["correction_id"]})
        return balances["general"] + balances["transit"], refunds

    balance, refund_entries = await asyncio.to_thread(wallet_state)
    assert balance == 500_00 - net
    assert refund_entries == 1
    assert denied.json()["denied"] is True and denied.json()["debt"] == 3_500
    assert entries[-1].json()["debt"] == 0
    # the declined fare was charged from the top-up, not written off
    assert debt_settled.json()["fares_total"] == 3_500
    assert len(debt_settled.json()["fares_collected"]) == 1
    broke_account = await asyncio.to_thread(
        mongo.schoolcard_wallet.wallet_accounts.find_one, {"_id": broke.contract})
    assert sum(broke_account["balances_by_sub"].values()) == 100_00 - 3_500
    # ... and transit's ride history shows that fare as debited, not declined

    async def broke_ride_debited() -> bool:
        rides = await asyncio.to_thread(lambda: list(mongo.schoolcard_transit.transit_rides.find(
            {"card_uid": broke.card_uid})))
        return [r["debit_status"] for r in rides] == ["debited"]

    await eventually(broke_ride_debited, timeout=30, what="the paid fare recorded as debited")



async def test_a_late_tap_that_makes_a_declined_fare_free_leaves_one_fare_to_collect(
        start_service, bootstrap, mongo):
    """The overcharge where the two services meet: a broke card rides at 08:10 (declined, owed
    35.00); the validator uploads a tap of 08:00 later, which makes the 08:10 ride a free
    transfer and costs 35.00 itself. The day costs 35.00: the top-up collects 35.00, not 70.00,
    and the card leaves the deny list."""
    start_service("wallet")
    start_service("transit")
    card = new_card()
    first, late = uid("tap"), uid("tap")
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "transit.events.v1") as transit_events, \
            TopicReader(bootstrap, "wallet.events.v1") as wallet_events, \
            TopicReader(bootstrap, "transit.deny-list.v1") as deny_list, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as wallet_dlq:
        await open_cards(integrator, mongo, card)
        await integrator.publish(tap(card, first, "08:10", "12"), card.card_uid)
        await wallet_events.wait_for(
            lambda r: r.key == card.contract and r.type.endswith("FareDeclined"), timeout=60)
        await integrator.publish(tap(card, late, "08:00", "29", offline=True), card.card_uid)
        [correction] = await transit_events.wait_for(
            lambda r: r.key == card.contract and r.type.endswith("FareCorrected"), timeout=60)
        declined = await wallet_events.wait_for(
            lambda r: r.key == card.contract and r.type.endswith("FareDeclined")
            and r.json()["ride_id"] == late, timeout=60)
        await integrator.publish(TopUpReceived(payment_id=uid("pay"), contract=card.contract,
                                               amount=100_00, channel="terminal",
                                               paid_at=datetime.now(UTC)), card.contract)
        [settled] = await wallet_events.wait_for(
            lambda r: r.key == card.contract and r.type.endswith("DebtSettled")
            and r.json()["payment_id"] is not None, timeout=60)
        lifted = await deny_list.wait_for(
            lambda r: r.key == card.card_uid and not r.json()["denied"], timeout=60)
        # wallet handled the correction before the top-up (one partition): a dead letter of
        # it (the old not_charged) would be on the topic by now
        dead = [r for r in await wallet_dlq.read_to_end() if r.key == card.contract]

    assert correction.json()["ride_id"] == first and correction.json()["refund"] == 3_500
    assert declined, "the late tap's own fare was declined too: the card had no money"
    assert settled.json()["fares_total"] == 3_500
    assert settled.json()["fares_collected"] == [late]
    account = await asyncio.to_thread(
        mongo.schoolcard_wallet.wallet_accounts.find_one, {"_id": card.contract})
    balances = account["balances_by_sub"]
    assert balances["general"] + balances["transit"] == 100_00 - 3_500
    assert lifted and dead == []
