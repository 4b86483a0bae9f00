"""A virtual card at the gates: its uid joins the allow-list under the child's contract, blocks
on its own (the plastic card stays allowed, and the other way round), and a replacement takes
the old uid off the list for good."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import access as wire
from contracts import integrations as integ
from contracts import wallet as wallet_wire
from services.access import domain as d
from services.access.handlers import Handlers
from services.access.settings import Settings
from services.runtime.consumer import Rejected
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

SCHOOL = "izh-school-42"
CONTRACT = "40012345"
OTHER = "40012399"
CARD = "04A2B3C4D5E6F7"
PHONE = "08F1E2D3C4B5A6"
NEW_PHONE = "08F1E2D3C4B5A7"
NOW = datetime(2026, 9, 1, 3, 51, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def _fact(uid: str, contract: str = CONTRACT, at: datetime = NOW) -> d.CardIssued:
    return d.CardIssued(f"virtual:{contract}:{uid}", uid, contract, SCHOOL, "5Б", at)


# --- the rules ------------------------------------------------------------------------------

def test_a_virtual_uid_joins_the_contract_and_follows_its_block():
    link = d.ContractCards(CONTRACT, [CARD])
    link.note_block("blocked:1", True, NOW - timedelta(hours=1), "lost")
    outcome = d.issue_virtual_card(link, None, None, _fact(PHONE), None)
    assert outcome.link.card_uids == [CARD, PHONE]
    [entry] = outcome.events
    assert (entry.card_uid, entry.allowed) == (PHONE, False)


def test_a_uid_of_another_contract_is_refused_and_a_replacement_unlinks_the_old_uid():
    other = d.project_card(None, _fact(PHONE, OTHER)).card
    with pytest.raises(d.AccessDomainError) as exc:
        d.issue_virtual_card(None, other, None, _fact(PHONE), None)
    assert exc.value.reason.value == "credential_conflict"

    first = d.issue_virtual_card(d.ContractCards(CONTRACT, [CARD]), None, None, _fact(PHONE),
                                 None)
    old = first.cards[0].card
    second = d.issue_virtual_card(first.link, None, old,
                                  _fact(NEW_PHONE, at=NOW + timedelta(minutes=1)), PHONE)
    assert second.link.card_uids == [CARD, NEW_PHONE]
    assert [(e.card_uid, e.allowed) for e in second.events] == [(NEW_PHONE, True),
                                                                 (PHONE, False)]


def test_one_card_blocked_alone_leaves_the_others_and_a_later_unblock_restores_it():
    card = d.project_card(None, _fact(PHONE)).card
    blocked = d.block_one_card(card, PHONE, "b:1", True, NOW + timedelta(minutes=1), "lost")
    assert blocked.card.status is d.CardStatus.BLOCKED
    again = d.block_one_card(blocked.card, PHONE, "b:1", True, NOW + timedelta(minutes=1),
                             "lost")
    assert not again.changed and again.events == ()
    freed = d.block_one_card(again.card, PHONE, "u:1", False, NOW + timedelta(minutes=2))
    assert freed.card.status is d.CardStatus.ACTIVE


# --- the handlers ---------------------------------------------------------------------------

def _issued() -> integ.CardIssued:
    return integ.CardIssued(contract=CONTRACT, card_uid=CARD, school_id=SCHOOL,
                            school_tz="Europe/Samara", student_id="stu-000451", class_name="5Б",
                            birth_date="2014-03-08", issued_at=NOW - timedelta(days=2))


def _virtual(uid: str = PHONE, replaces: str | None = None) -> integ.VirtualCardIssued:
    return integ.VirtualCardIssued(contract=CONTRACT, card_uid=uid, kind="watch_nfc",
                                   replaces_card_uid=replaces, school_id=SCHOOL,
                                   school_tz="Europe/Samara", class_name="5Б",
                                   issued_at=NOW - timedelta(days=1))


async def _access() -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("access", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))
    rt.fake_uow.sent.clear()
    return rt, h


async def test_an_issued_virtual_card_is_allowed_under_the_childs_contract():
    rt, h = await _access()
    msg = rt.inbound(_virtual(), key=CONTRACT)
    await h.on_virtual_card_issued(msg)
    [entry] = rt.emitted(wire.AllowListEntry)
    assert (entry.card_uid, entry.school_id, entry.allowed) == (PHONE, SCHOOL, True)
    card = await rt.db.access_cards.find_one({"_id": PHONE})
    assert card is not None and card["contract"] == CONTRACT
    await rt.redelivered_changes_nothing(h.on_virtual_card_issued, msg)


async def test_wallets_block_of_one_uid_denies_only_that_uid():
    rt, h = await _access()
    await h.on_virtual_card_issued(rt.inbound(_virtual(), key=CONTRACT))
    blocked = rt.inbound(wallet_wire.CardBlocked(contract=CONTRACT, card_uid=PHONE,
                                                 by_account=None, reason="lost",
                                                 blocked_at=NOW), key=CONTRACT)
    await h.on_card_blocked(blocked)
    await rt.redelivered_changes_nothing(h.on_card_blocked, blocked)
    plastic = await rt.db.access_cards.find_one({"_id": CARD})
    phone = await rt.db.access_cards.find_one({"_id": PHONE})
    assert plastic is not None and phone is not None
    assert (plastic["status"], phone["status"]) == ("active", "blocked")
    await h.on_card_unblocked(rt.inbound(wallet_wire.CardUnblocked(
        contract=CONTRACT, card_uid=PHONE, by_account=None,
        unblocked_at=NOW + timedelta(minutes=1)), key=CONTRACT))
    assert [(e.card_uid, e.allowed) for e in rt.emitted(wire.AllowListEntry)] == [
        (PHONE, True), (PHONE, False), (PHONE, True)]


async def test_a_replacement_of_a_uid_the_contract_does_not_have_is_dead_lettered():
    rt, h = await _access()
    with pytest.raises(Rejected) as exc:
        await h.on_virtual_card_issued(rt.inbound(_virtual(NEW_PHONE, replaces=PHONE),
                                                  key=CONTRACT))
    assert exc.value.code == "unknown_credential"


def test_a_card_blocked_alone_stays_denied_when_its_contract_is_unblocked():
    card = d.project_card(None, _fact(PHONE)).card
    card = d.block_one_card(card, PHONE, "b:1", True, NOW + timedelta(minutes=1), "lost").card
    link = d.ContractCards(CONTRACT, [PHONE])
    blocked = d.block_contract(link, CONTRACT, [card], "cb:1", True,
                               NOW + timedelta(minutes=2), "lost")
    unblocked = d.block_contract(blocked.link, CONTRACT, [blocked.cards[0].card], "cu:1", False,
                                 NOW + timedelta(minutes=3))
    assert unblocked.cards[0].card.status is d.CardStatus.BLOCKED
    assert unblocked.events == ()
    freed = d.block_one_card(unblocked.cards[0].card, PHONE, "u:1", False,
                             NOW + timedelta(minutes=4))
    assert freed.card.status is d.CardStatus.ACTIVE
    assert [(e.card_uid, e.allowed) for e in freed.events] == [(PHONE, True)]
