"""transit's handlers over the in-memory fakes: each handler's events, replies and stored state,
and a second delivery of the same message that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import integrations as integ
from contracts import transit as wire
from contracts import wallet as wallet_wire
from contracts.auth import ChildGrant, Role
from contracts.envelope import CommandAccepted
from contracts.types import GuardianRole
from services.runtime.consumer import Rejected
from services.transit import store
from services.transit.domain import parse_fare_rules
from services.transit.handlers import Handlers
from services.transit.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

OPERATOR = "izhevsk-gortrans"
CONTRACT = "40012345"
NEW_CONTRACT = "40012346"
CARD = "04A2B3C4D5E6F7"
NEW_CARD = "04A2B3C4D5E6F8"
SCHOOL = "izh-school-42"
NOW = datetime(2026, 9, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


async def _transit() -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("transit", Settings, now=NOW)
    rules = json.loads(rt.settings.fare_rules_file.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    await store.seed_rules(rt.db, parse_fare_rules(rules), NOW)
    return rt, Handlers(rt)


def _issued(card_uid: str = CARD, contract: str = CONTRACT) -> integ.CardIssued:
    return integ.CardIssued(contract=contract, card_uid=card_uid, school_id=SCHOOL,
                            school_tz="Europe/Samara", student_id="stu-000451", class_name="5Б",
                            birth_date="2014-03-08", issued_at=NOW - timedelta(days=1))


def _tap(tap_id: str = "val-1181-000321", card_uid: str = CARD,
         at: datetime = NOW - timedelta(minutes=30)) -> integ.ValidatorTapped:
    return integ.ValidatorTapped(tap_id=tap_id, validator_id="val-1181", vehicle_id="bus-2231",
                                 operator_id=OPERATOR, route="29", mode="bus",
                                 stop_id="stop-central-square", card_uid=card_uid, tapped_at=at)


def _parent(rt: FakeRuntime, contract: str = CONTRACT) -> str:
    return rt.token(children=[ChildGrant(contract=contract, role=GuardianRole.PRIMARY)])


async def _with_card(rt: FakeRuntime, h: Handlers) -> None:
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))


async def _ridden(rt: FakeRuntime, h: Handlers) -> wire.FareAssessed:
    await _with_card(rt, h)
    await h.on_validator_tapped(rt.inbound(_tap(), key=CARD))
    [assessed] = rt.emitted(wire.FareAssessed)
    return assessed


def _deny_entries(rt: FakeRuntime) -> list[wire.DenyListEntry]:
    return rt.emitted(wire.DenyListEntry)


async def test_an_issued_card_is_stored_active_once():
    rt, h = await _transit()
    msg = rt.inbound(_issued(), key=CONTRACT)
    await h.on_card_issued(msg)
    card = await rt.db.transit_cards.find_one({"_id": CARD})
    assert card is not None
    assert (card["contract"], card["status"], card["concession"]) == (CONTRACT, "active", None)
    await rt.redelivered_changes_nothing(h.on_card_issued, msg)


async def test_a_card_issued_after_its_contract_was_blocked_starts_on_the_deny_list():
    rt, h = await _transit()
    await h.on_card_blocked(rt.inbound(wallet_wire.CardBlocked(
        contract=CONTRACT, by_account=None, reason="lost", blocked_at=NOW), key=CONTRACT))
    await _with_card(rt, h)
    [entry] = _deny_entries(rt)
    assert (entry.card_uid, entry.denied, entry.blocked) == (CARD, True, True)


async def test_a_reissued_card_closes_the_old_one_and_keeps_the_concession():
    rt, h = await _transit()
    await _with_card(rt, h)
    await h.on_set_concession(rt.inbound(wire.SetConcession(
        request_id="req-1", contract=CONTRACT, valid_until="2027-06-30"),
        token=rt.token(Role.SUPPORT)))
    msg = rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract=NEW_CONTRACT, new_card_uid=NEW_CARD,
        school_id=SCHOOL, school_tz="Europe/Samara", class_name="6А", reissued_at=NOW),
        key=CONTRACT)
    await h.on_card_reissued(msg)
    old = await rt.db.transit_cards.find_one({"_id": CARD})
    new = await rt.db.transit_cards.find_one({"_id": NEW_CARD})
    assert old is not None and new is not None
    assert (old["status"], old["closed_at"]) == ("closed", NOW)
    assert (new["status"], new["contract"]) == ("active", NEW_CONTRACT)
    assert new["concession"] == old["concession"] is not None
    assert [(e.card_uid, e.denied) for e in _deny_entries(rt)] == [(CARD, True)]
    await rt.redelivered_changes_nothing(h.on_card_reissued, msg)


async def test_a_tap_records_the_ride_and_asks_wallet_for_the_fare():
    rt, h = await _transit()
    await _with_card(rt, h)
    msg = rt.inbound(_tap(), key=CARD)
    await h.on_validator_tapped(msg)
    [ride] = rt.emitted(wire.RideRecorded)
    [assessed] = rt.emitted(wire.FareAssessed)
    assert (ride.ride_id, ride.contract, ride.explanation) == ("val-1181-000321", CONTRACT,
                                                                wire.FareExplanation.FULL_FARE)
    assert (assessed.ride_id, assessed.amount) == ("val-1181-000321", ride.fare)
    assert ride.fare > 0
    stored = await rt.db.transit_rides.find_one({"_id": "val-1181-000321"})
    assert stored is not None and stored["contract"] == CONTRACT
    assert await rt.db.transit_travel.find_one({"_id": f"{OPERATOR}:{CARD}"}) is not None
    await rt.redelivered_changes_nothing(h.on_validator_tapped, msg)


async def test_a_tap_of_a_card_never_issued_is_rejected_and_stores_nothing():
    rt, h = await _transit()
    with pytest.raises(Rejected) as rejected:
        await h.on_validator_tapped(rt.inbound(_tap(), key=CARD))
    assert rejected.value.code == "unknown_card"
    assert await rt.db.transit_rides.count_documents({}) == 0
    assert await rt.db.transit_inbox.count_documents({}) == 0  # rolled back with the rest
    assert rt.emitted() == []


async def test_a_debited_fare_marks_the_ride_debited():
    rt, h = await _transit()
    assessed = await _ridden(rt, h)
    msg = rt.inbound(wallet_wire.FareDebited(
        contract=CONTRACT, ride_id=assessed.ride_id, amount=assessed.amount,
        balances={"general": 0, "canteen": 0, "transit": 1000, "bonus_points": 0},
        debited_at=NOW), key=CONTRACT)
    await h.on_fare_debited(msg)
    ride = await rt.db.transit_rides.find_one({"_id": assessed.ride_id})
    assert ride is not None and ride["debit_status"] == "debited"
    await rt.redelivered_changes_nothing(h.on_fare_debited, msg)


async def test_a_fare_declined_for_lack_of_money_puts_the_card_on_the_deny_list():
    rt, h = await _transit()
    assessed = await _ridden(rt, h)
    msg = rt.inbound(wallet_wire.FareDeclined(
        contract=CONTRACT, ride_id=assessed.ride_id, amount=assessed.amount,
        reason=wallet_wire.DeclineReason.INSUFFICIENT_FUNDS, declined_at=NOW), key=CONTRACT)
    await h.on_fare_declined(msg)
    [entry] = _deny_entries(rt)
    assert (entry.card_uid, entry.denied, entry.debt) == (CARD, True, assessed.amount)
    ride = await rt.db.transit_rides.find_one({"_id": assessed.ride_id})
    assert ride is not None and ride["debit_status"] == "declined"
    await rt.redelivered_changes_nothing(h.on_fare_declined, msg)


async def test_a_wallet_answer_for_an_unknown_ride_is_rejected():
    rt, h = await _transit()
    with pytest.raises(Rejected) as rejected:
        await h.on_fare_debited(rt.inbound(wallet_wire.FareDebited(
            contract=CONTRACT, ride_id="val-1-999", amount=100,
            balances={"general": 0, "canteen": 0, "transit": 0, "bonus_points": 0},
            debited_at=NOW), key=CONTRACT))
    assert rejected.value.code == "unknown_ride"


async def test_a_settled_debt_lifts_the_deny_list_entry():
    rt, h = await _transit()
    assessed = await _ridden(rt, h)
    await h.on_fare_declined(rt.inbound(wallet_wire.FareDeclined(
        contract=CONTRACT, ride_id=assessed.ride_id, amount=assessed.amount,
        reason=wallet_wire.DeclineReason.INSUFFICIENT_FUNDS, declined_at=NOW), key=CONTRACT))
    msg = rt.inbound(wallet_wire.DebtSettled(
        contract=CONTRACT, payment_id="sbp-7f3a9c2e1b4d", fares_collected=[assessed.ride_id],
        fares_total=assessed.amount, settled_at=NOW), key=CONTRACT)
    await h.on_debt_settled(msg)
    assert [(e.denied, e.debt) for e in _deny_entries(rt)] == [(True, assessed.amount),
                                                               (False, 0)]
    ride = await rt.db.transit_rides.find_one({"_id": assessed.ride_id})
    assert ride is not None and ride["debit_status"] == "debited"
    await rt.redelivered_changes_nothing(h.on_debt_settled, msg)


async def test_blocking_and_unblocking_a_contract_denies_and_allows_its_ridden_card():
    rt, h = await _transit()
    await _ridden(rt, h)
    blocked = rt.inbound(wallet_wire.CardBlocked(contract=CONTRACT, by_account=None,
                                                 reason="lost", blocked_at=NOW), key=CONTRACT)
    await h.on_card_blocked(blocked)
    card = await rt.db.transit_cards.find_one({"_id": CARD})
    assert card is not None and card["blocked"] is True
    await rt.redelivered_changes_nothing(h.on_card_blocked, blocked)
    unblocked = rt.inbound(wallet_wire.CardUnblocked(contract=CONTRACT, by_account=None,
                                                     unblocked_at=NOW),
                           key=CONTRACT)
    await h.on_card_unblocked(unblocked)
    assert [(e.card_uid, e.denied, e.blocked) for e in _deny_entries(rt)] == [
        (CARD, True, True), (CARD, False, False)]
    assert (await rt.db.transit_contract_blocks.find_one({"_id": CONTRACT})) == {
        "_id": CONTRACT, "blocked": False}
    await rt.redelivered_changes_nothing(h.on_card_unblocked, unblocked)


def _rules_doc(rt: FakeRuntime) -> dict:  # type: ignore[type-arg]
    rules = json.loads(rt.settings.fare_rules_file.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    return next(o for o in rules["operators"] if o["operator_id"] == OPERATOR)


async def test_support_sets_fare_rules_and_a_parent_may_not():
    rt, h = await _transit()
    command = wire.SetFareRules(request_id="req-1", operator_id=OPERATOR, version=2,
                                rules=_rules_doc(rt))
    refused = rt.inbound(command, token=_parent(rt))
    await h.on_set_fare_rules(refused)
    assert rt.error_code() == "forbidden"
    msg = rt.inbound(command, token=rt.token(Role.SUPPORT))
    await h.on_set_fare_rules(msg)
    assert rt.replies()[-1] == CommandAccepted(request_id="req-1")
    stored = await rt.db.transit_fare_rules.find_one({"_id": OPERATOR})
    assert stored is not None and (stored["source"], stored["version"]) == ("command", 2)
    await rt.redelivered_changes_nothing(h.on_set_fare_rules, msg)


async def test_an_integrator_sets_the_fare_rules_of_its_own_operator_only():
    rt, h = await _transit()
    command = wire.SetFareRules(request_id="req-1", operator_id=OPERATOR, version=2,
                                rules=_rules_doc(rt))
    await h.on_set_fare_rules(rt.inbound(command, token=rt.token(
        Role.INTEGRATOR, operator_id="moscow-transport")))
    assert rt.error_code() == "forbidden"
    stored = await rt.db.transit_fare_rules.find_one({"_id": OPERATOR})
    assert stored is not None and stored["source"] == "file"
    await h.on_set_fare_rules(rt.inbound(command.model_copy(update={"request_id": "req-2"}),
                                         token=rt.token(Role.INTEGRATOR, operator_id=OPERATOR)))
    assert rt.replies()[-1] == CommandAccepted(request_id="req-2")
    stored = await rt.db.transit_fare_rules.find_one({"_id": OPERATOR})
    assert stored is not None and (stored["source"], stored["version"]) == ("command", 2)


async def test_fare_rules_for_another_operator_are_refused():
    rt, h = await _transit()
    await h.on_set_fare_rules(rt.inbound(wire.SetFareRules(
        request_id="req-1", operator_id="moscow-transport", version=2, rules=_rules_doc(rt)),
        token=rt.token(Role.SUPPORT)))
    assert rt.error_code() == "operator_mismatch"
    stored = await rt.db.transit_fare_rules.find_one({"_id": "moscow-transport"})
    assert stored is not None and stored["source"] == "file"


async def test_a_concession_is_set_on_every_card_and_travel_of_the_contract():
    rt, h = await _transit()
    await _ridden(rt, h)
    msg = rt.inbound(wire.SetConcession(request_id="req-2", contract=CONTRACT,
                                        valid_until="2027-06-30"),
                     token=rt.token(Role.SUPPORT))
    await h.on_set_concession(msg)
    assert rt.reply() == CommandAccepted(request_id="req-2")
    card = await rt.db.transit_cards.find_one({"_id": CARD})
    travel = await rt.db.transit_travel.find_one({"_id": f"{OPERATOR}:{CARD}"})
    assert card is not None and card["concession"]["valid_until"] == "2027-06-30"
    assert travel is not None and travel["concession"]["valid_until"] == "2027-06-30"
    await rt.redelivered_changes_nothing(h.on_set_concession, msg)


async def test_a_concession_for_a_contract_without_cards_is_refused():
    rt, h = await _transit()
    await h.on_set_concession(rt.inbound(wire.SetConcession(
        request_id="req-2", contract=CONTRACT, valid_until="2027-06-30"),
        token=rt.token(Role.SUPPORT)))
    assert rt.error_code() == "unknown_contract"


async def test_a_guardian_reads_the_rides_of_their_child_and_nobody_elses():
    rt, h = await _transit()
    assessed = await _ridden(rt, h)
    query = wire.GetRides(contract=CONTRACT, csv=True)
    msg = rt.inbound(query, token=_parent(rt))
    await h.on_get_rides(msg)
    reply = rt.reply()
    assert isinstance(reply, wire.RidesReply)
    assert [r.ride_id for r in reply.rides] == [assessed.ride_id]
    assert reply.csv is not None and "29" in reply.csv
    await rt.redelivered_changes_nothing(h.on_get_rides, msg)
    await h.on_get_rides(rt.inbound(query, token=_parent(rt, NEW_CONTRACT)))
    assert len(rt.replies()) == 2
    assert rt.replies()[-1].error.code == "forbidden"  # type: ignore[attr-defined]


def _switched(enabled: bool, at: datetime = NOW) -> wallet_wire.TransitPaymentsSwitched:
    return wallet_wire.TransitPaymentsSwitched(contract=CONTRACT, enabled=enabled,
                                               by_account="acc_7f3a9c2e1b4d", switched_at=at)


async def test_transit_payments_switched_off_deny_every_card_and_refuse_later_taps():
    rt, h = await _transit()
    await _ridden(rt, h)
    await h.on_card_issued(rt.inbound(_issued(NEW_CARD), key=CONTRACT))  # never rode
    off = rt.inbound(_switched(False), key=CONTRACT)
    await h.on_transit_payments_switched(off)
    await rt.redelivered_changes_nothing(h.on_transit_payments_switched, off)
    with pytest.raises(Rejected) as rejected:
        await h.on_validator_tapped(rt.inbound(_tap("val-1181-000400", at=NOW), key=CARD))
    await h.on_transit_payments_switched(rt.inbound(_switched(True), key=CONTRACT))

    assert rejected.value.code == "transit_payments_off"
    assert sorted((e.card_uid, e.denied, tuple(e.reasons)) for e in _deny_entries(rt)) == [
        (CARD, False, ()), (CARD, True, (wire.DenyListReason.TRANSIT_PAYMENTS_OFF,)),
        (NEW_CARD, False, ()), (NEW_CARD, True, (wire.DenyListReason.TRANSIT_PAYMENTS_OFF,))]


async def test_a_blocked_card_switched_on_stays_denied_and_a_card_issued_while_off_starts_denied():
    rt, h = await _transit()
    await _with_card(rt, h)
    await h.on_card_blocked(rt.inbound(wallet_wire.CardBlocked(
        contract=CONTRACT, by_account=None, reason="lost", blocked_at=NOW), key=CONTRACT))
    await h.on_transit_payments_switched(rt.inbound(_switched(False), key=CONTRACT))
    await h.on_card_issued(rt.inbound(_issued(NEW_CARD), key=CONTRACT))
    await h.on_transit_payments_switched(rt.inbound(
        _switched(True, NOW + timedelta(minutes=1)), key=CONTRACT))

    latest = {e.card_uid: e for e in _deny_entries(rt)}
    assert (latest[CARD].denied, latest[CARD].reasons) == (
        True, [wire.DenyListReason.CARD_BLOCKED])
    assert latest[NEW_CARD].denied is True  # issued under a blocked contract


async def test_a_card_reissued_while_its_transit_payments_are_off_starts_denied():
    rt, h = await _transit()
    await _with_card(rt, h)
    await h.on_transit_payments_switched(rt.inbound(_switched(False), key=CONTRACT))
    await h.on_card_reissued(rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract=NEW_CONTRACT, new_card_uid=NEW_CARD,
        school_id=SCHOOL, school_tz="Europe/Samara", class_name="5Б", reissued_at=NOW),
        key=CONTRACT))
    with pytest.raises(Rejected) as rejected:
        await h.on_validator_tapped(rt.inbound(_tap("val-1181-000500", NEW_CARD,
                                                    NOW + timedelta(minutes=1)), key=NEW_CARD))

    latest = {e.card_uid: e for e in _deny_entries(rt)}
    assert (latest[NEW_CARD].denied, latest[NEW_CARD].reasons) == (
        True, [wire.DenyListReason.TRANSIT_PAYMENTS_OFF])
    assert rejected.value.code == "transit_payments_off"
