"""A virtual card in wallet: the credential rules (pure) and the handlers over the fakes — a
sale read from the virtual uid pays from the plastic card's account; each credential blocks on
its own; a replacement retires the old uid."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import integrations as integ
from contracts import wallet as wire
from contracts.auth import ChildGrant, Role
from contracts.envelope import CommandAccepted, ErrorReply
from services.runtime.consumer import Rejected
from services.wallet import domain as d
from services.wallet.domain import credentials as cr
from services.wallet.handlers import Handlers
from services.wallet.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

NOW = datetime(2026, 9, 1, 5, 0, tzinfo=UTC)
SCHOOL = "izh-school-42"
CONTRACT = "40012345"
OTHER = "40012399"
CARD = "04A2B3C4D5E6F7"
PHONE = "08F1E2D3C4B5A6"
NEW_PHONE = "08F1E2D3C4B5A7"
TZ = "Asia/Yekaterinburg"


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


# --- the rules ------------------------------------------------------------------------------

def test_a_virtual_uid_maps_to_the_contract_and_a_repeat_changes_nothing():
    [phone] = cr.issue_virtual(None, None, card_uid=PHONE, contract=CONTRACT, kind="phone_nfc",
                               plastic_uid=CARD, replaces=None, at=NOW)
    assert (phone.contract, phone.state) == (CONTRACT, d.CredentialState.ACTIVE)
    assert cr.issue_virtual(phone, None, card_uid=PHONE, contract=CONTRACT, kind="phone_nfc",
                            plastic_uid=CARD, replaces=None, at=NOW) == []


def test_the_plastic_uid_or_another_contracts_uid_cannot_become_a_virtual_card():
    with pytest.raises(d.WalletRejected) as plastic:
        cr.issue_virtual(None, None, card_uid=CARD, contract=CONTRACT, kind="qr_token",
                         plastic_uid=CARD, replaces=None, at=NOW)
    [foreign] = cr.issue_virtual(None, None, card_uid=PHONE, contract=OTHER, kind="qr_token",
                                 plastic_uid="04FFFFFFFFFFFF", replaces=None, at=NOW)
    with pytest.raises(d.WalletRejected) as taken:
        cr.issue_virtual(foreign, None, card_uid=PHONE, contract=CONTRACT, kind="qr_token",
                         plastic_uid=CARD, replaces=None, at=NOW)
    assert {plastic.value.reason.value, taken.value.reason.value} == {"credential_conflict"}


def test_a_replacement_retires_the_old_uid_which_then_refuses_sales_and_cannot_be_unblocked():
    [old] = cr.issue_virtual(None, None, card_uid=PHONE, contract=CONTRACT, kind="qr_token",
                             plastic_uid=CARD, replaces=None, at=NOW)
    retired, new = cr.issue_virtual(None, old, card_uid=NEW_PHONE, contract=CONTRACT,
                                    kind="qr_token", plastic_uid=CARD, replaces=PHONE,
                                    at=NOW + timedelta(hours=1))
    assert (retired.state, retired.replaced_by) == (d.CredentialState.RETIRED, NEW_PHONE)
    assert cr.refuses_sale(retired) and not cr.refuses_sale(new)
    with pytest.raises(d.WalletRejected) as exc:
        cr.set_blocked(retired, card_uid=PHONE, contract=CONTRACT, plastic_uid=CARD,
                       blocked=False, at=NOW + timedelta(hours=2))
    assert exc.value.reason.value == "credential_retired"


def test_the_plastic_card_blocks_alone_and_a_repeated_block_emits_nothing():
    plastic, event = cr.set_blocked(None, card_uid=CARD, contract=CONTRACT, plastic_uid=CARD,
                                    blocked=True, at=NOW)
    assert event is not None and event.blocked and plastic.kind is None
    assert cr.refuses_sale(plastic) and not cr.refuses_sale(None)
    again, repeat = cr.set_blocked(plastic, card_uid=CARD, contract=CONTRACT, plastic_uid=CARD,
                                   blocked=True, at=NOW + timedelta(minutes=1))
    assert repeat is None and again.changed_at == NOW
    with pytest.raises(d.WalletRejected):
        cr.set_blocked(None, card_uid=PHONE, contract=CONTRACT, plastic_uid=CARD,
                       blocked=True, at=NOW)


# --- the handlers ---------------------------------------------------------------------------

def _issued() -> integ.CardIssued:
    return integ.CardIssued(contract=CONTRACT, card_uid=CARD, school_id=SCHOOL, school_tz=TZ,
                            student_id="stu-1", class_name="5Б", birth_date="2014-03-08",
                            issued_at=NOW - timedelta(days=1))


def _virtual(uid: str = PHONE, replaces: str | None = None,
             contract: str = CONTRACT) -> integ.VirtualCardIssued:
    return integ.VirtualCardIssued(contract=contract, card_uid=uid, kind="phone_nfc",
                                   replaces_card_uid=replaces, school_id=SCHOOL, school_tz=TZ,
                                   class_name="5Б", issued_at=NOW - timedelta(hours=1))


def _sale(sale_id: str, card: str) -> integ.CanteenSaleRequested:
    return integ.CanteenSaleRequested(
        sale_id=sale_id, terminal_id="izh-42-till-1", school_id=SCHOOL, card_uid=card,
        items=[integ.SaleItem(sku="borsch", name="Борщ", category="hot_meal", qty=1,
                              unit_price=85_00)], sold_at=NOW)


def _parent(rt: FakeRuntime) -> str:
    return rt.token(Role.PARENT, children=[ChildGrant(contract=CONTRACT, role="primary")])


async def _wallet() -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))
    await h.on_top_up(rt.inbound(integ.TopUpReceived(
        payment_id="pay-seed", contract=CONTRACT, amount=500_00, sub_balance="canteen",
        channel="bank_card", paid_at=NOW), key=CONTRACT))
    await h.on_virtual_card_issued(rt.inbound(_virtual(), key=CONTRACT))
    rt.fake_uow.sent.clear()
    rt.fake_uow.replies.clear()
    return rt, h


async def _block(rt: FakeRuntime, h: Handlers, uid: str, request: str,
                 blocked: bool = True) -> object:
    if blocked:
        await h.on_block_card(rt.inbound(wire.BlockCard(
            request_id=request, contract=CONTRACT, card_uid=uid), token=_parent(rt)))
    else:
        await h.on_unblock_card(rt.inbound(wire.UnblockCard(
            request_id=request, contract=CONTRACT, card_uid=uid), token=_parent(rt)))
    return rt.fake_uow.replies[-1].message


async def test_a_sale_read_from_the_virtual_card_pays_from_the_childs_account():
    rt, h = await _wallet()
    await h.on_sale(rt.inbound(_sale("till-1-0001", PHONE), key=PHONE))
    [decision] = rt.emitted(wire.SaleDecision)
    [posted] = rt.emitted(wire.SalePosted)
    assert decision.approved and posted.contract == CONTRACT
    assert posted.balances.canteen == 415_00


async def test_a_virtual_card_issued_again_changes_nothing_and_for_an_unknown_contract_is_refused():
    rt, h = await _wallet()
    msg = rt.inbound(_virtual(), key=CONTRACT)
    await h.on_virtual_card_issued(msg)
    assert await rt.db.wallet_credentials.count_documents({}) == 1
    with pytest.raises(Rejected) as exc:
        await h.on_virtual_card_issued(rt.inbound(_virtual(NEW_PHONE, contract=OTHER),
                                                  key=OTHER))
    assert exc.value.code == "unknown_contract"


async def test_a_blocked_virtual_card_is_declined_while_the_plastic_card_still_buys():
    rt, h = await _wallet()
    assert isinstance(await _block(rt, h, PHONE, "b-1"), CommandAccepted)
    [blocked] = rt.emitted(wire.CardBlocked)
    assert (blocked.contract, blocked.card_uid) == (CONTRACT, PHONE)
    await h.on_sale(rt.inbound(_sale("till-1-0001", PHONE), key=PHONE))
    await h.on_sale(rt.inbound(_sale("till-1-0002", CARD), key=CARD))
    assert [(x.approved, x.reason) for x in rt.emitted(wire.SaleDecision)] == [
        (False, "card_blocked"), (True, None)]
    [declined] = rt.emitted(wire.SaleDeclined)
    assert declined.contract == CONTRACT and PHONE not in declined.detail

    assert isinstance(await _block(rt, h, PHONE, "b-1"), CommandAccepted)  # a retry
    assert len(rt.emitted(wire.CardBlocked)) == 1


async def test_the_plastic_card_blocked_alone_leaves_the_virtual_card_buying():
    rt, h = await _wallet()
    await _block(rt, h, CARD, "b-2")
    await h.on_sale(rt.inbound(_sale("till-1-0001", CARD), key=CARD))
    await h.on_sale(rt.inbound(_sale("till-1-0002", PHONE), key=PHONE))
    assert [(x.approved, x.reason) for x in rt.emitted(wire.SaleDecision)] == [
        (False, "card_blocked"), (True, None)]
    await _block(rt, h, CARD, "b-3", blocked=False)
    [unblocked] = rt.emitted(wire.CardUnblocked)
    assert unblocked.card_uid == CARD


async def test_blocking_a_uid_of_another_child_is_refused():
    rt, h = await _wallet()
    reply = await _block(rt, h, "04FFFFFFFFFFFF", "b-4")
    assert isinstance(reply, ErrorReply) and reply.error is not None
    assert reply.error.code == "unknown_credential"


async def test_a_replaced_virtual_card_is_declined_and_the_listing_shows_both():
    rt, h = await _wallet()
    await h.on_virtual_card_issued(rt.inbound(_virtual(NEW_PHONE, replaces=PHONE),
                                              key=CONTRACT))
    await h.on_sale(rt.inbound(_sale("till-1-0001", PHONE), key=PHONE))
    await h.on_sale(rt.inbound(_sale("till-1-0002", NEW_PHONE), key=NEW_PHONE))
    assert [x.approved for x in rt.emitted(wire.SaleDecision)] == [False, True]
    await h.on_get_cards(rt.inbound(wire.GetCards(contract=CONTRACT), token=_parent(rt)))
    reply = rt.fake_uow.replies[-1].message
    assert isinstance(reply, wire.CardsReply)
    assert [(c.card_uid, c.kind, c.state) for c in reply.cards] == [
        (CARD, None, "active"), (PHONE, "phone_nfc", "retired"),
        (NEW_PHONE, "phone_nfc", "active")]
