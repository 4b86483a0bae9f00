"""A virtual card at the validators: it rides on the child's contract (fares go to the same
account), goes on the deny list alone when blocked alone, and a replaced uid is closed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import integrations as integ
from contracts import transit as wire
from contracts import wallet as wallet_wire
from services.runtime.consumer import Rejected
from services.transit import domain as d
from services.transit import store
from services.transit.domain import parse_fare_rules
from services.transit.handlers import Handlers
from services.transit.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

OPERATOR = "izhevsk-gortrans"
CONTRACT = "40012345"
OTHER = "40012399"
CARD = "04A2B3C4D5E6F7"
PHONE = "08F1E2D3C4B5A6"
NEW_PHONE = "08F1E2D3C4B5A7"
SCHOOL = "izh-school-42"
NOW = datetime(2026, 9, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def test_a_tap_is_refused_from_the_instant_of_its_own_block_and_unblocks_wait_for_it():
    assert not d.refuses_tap(None, NOW)
    assert not d.refuses_tap(NOW, NOW - timedelta(seconds=1))  # ridden before: still priced
    assert d.refuses_tap(NOW, NOW)
    assert d.follows_contract_block(NOW, True) and d.follows_contract_block(None, False)
    assert not d.follows_contract_block(NOW, False)


async def _transit() -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("transit", Settings, now=NOW)
    rules = json.loads(rt.settings.fare_rules_file.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    await store.seed_rules(rt.db, parse_fare_rules(rules), NOW)
    h = Handlers(rt)
    await h.on_card_issued(rt.inbound(integ.CardIssued(
        contract=CONTRACT, card_uid=CARD, school_id=SCHOOL, school_tz="Europe/Samara",
        student_id="stu-1", class_name="5Б", birth_date="2014-03-08",
        issued_at=NOW - timedelta(days=1)), key=CONTRACT))
    await h.on_virtual_card_issued(rt.inbound(_virtual(), key=CONTRACT))
    rt.fake_uow.sent.clear()
    return rt, h


def _virtual(uid: str = PHONE, replaces: str | None = None,
             contract: str = CONTRACT) -> integ.VirtualCardIssued:
    return integ.VirtualCardIssued(contract=contract, card_uid=uid, kind="qr_token",
                                   replaces_card_uid=replaces, school_id=SCHOOL,
                                   school_tz="Europe/Samara", class_name="5Б",
                                   issued_at=NOW - timedelta(hours=2))


def _tap(tap_id: str, card_uid: str, at: datetime = NOW - timedelta(minutes=30)
         ) -> integ.ValidatorTapped:
    return integ.ValidatorTapped(tap_id=tap_id, validator_id="val-1181", vehicle_id="bus-2231",
                                 operator_id=OPERATOR, route="29", mode="bus",
                                 stop_id="stop-central-square", card_uid=card_uid, tapped_at=at)


async def test_a_ride_on_the_virtual_card_is_charged_to_the_childs_contract():
    rt, h = await _transit()
    await h.on_validator_tapped(rt.inbound(_tap("val-1", PHONE), key=PHONE))
    [assessed] = rt.emitted(wire.FareAssessed)
    assert assessed.contract == CONTRACT and assessed.amount > 0


async def test_a_virtual_card_blocked_alone_is_denied_and_refused_while_the_plastic_rides():
    rt, h = await _transit()
    blocked = rt.inbound(wallet_wire.CardBlocked(contract=CONTRACT, card_uid=PHONE,
                                                 by_account=None, reason="lost",
                                                 blocked_at=NOW - timedelta(minutes=40)),
                         key=CONTRACT)
    await h.on_card_blocked(blocked)
    [entry] = rt.emitted(wire.DenyListEntry)
    assert (entry.card_uid, entry.denied, entry.blocked) == (PHONE, True, True)
    with pytest.raises(Rejected) as exc:
        await h.on_validator_tapped(rt.inbound(_tap("val-1", PHONE), key=PHONE))
    assert exc.value.code == "card_blocked"
    await h.on_validator_tapped(rt.inbound(_tap("val-2", CARD), key=CARD))
    assert [a.contract for a in rt.emitted(wire.FareAssessed)] == [CONTRACT]

    # the whole contract unblocked (e.g. after a lost-card scare) leaves the phone denied
    await h.on_card_unblocked(rt.inbound(wallet_wire.CardUnblocked(
        contract=CONTRACT, by_account=None, unblocked_at=NOW), key=CONTRACT))
    phone = await store_card(rt, PHONE)
    assert phone["blocked"] is True


async def store_card(rt: FakeRuntime, uid: str) -> dict[str, object]:
    doc = await rt.db.transit_cards.find_one({"_id": uid})
    assert doc is not None
    return dict(doc)


async def test_a_replaced_virtual_card_is_closed_and_denied_and_a_foreign_uid_refused():
    rt, h = await _transit()
    await h.on_virtual_card_issued(rt.inbound(_virtual(NEW_PHONE, replaces=PHONE),
                                              key=CONTRACT))
    assert (await store_card(rt, PHONE))["status"] == "closed"
    assert [(e.card_uid, e.denied) for e in rt.emitted(wire.DenyListEntry)] == [(PHONE, True)]
    with pytest.raises(Rejected) as exc:
        await h.on_virtual_card_issued(rt.inbound(_virtual(NEW_PHONE, contract=OTHER),
                                                  key=OTHER))
    assert exc.value.code == "credential_conflict"
