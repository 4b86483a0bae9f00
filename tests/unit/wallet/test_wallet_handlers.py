"""wallet's handlers over the in-memory fakes: each handler's reply (or error code), the events
it emits and the balances it leaves, a refusal's code, and a dead-lettered event's code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import integrations as integ
from contracts import transit
from contracts import wallet as wire
from contracts.auth import ChildGrant, Role
from contracts.catalog import APP_REPLIES
from contracts.envelope import CommandAccepted
from services.runtime.consumer import Rejected
from services.wallet.handlers import Handlers
from services.wallet.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

NOW = datetime(2026, 9, 1, 5, 0, tzinfo=UTC)  # 10:00 in Yekaterinburg, a school day
SCHOOL = "izh-school-42"
CONTRACT = "40012345"
CARD = "04A2B3C4D5E6F7"
TZ = "Asia/Yekaterinburg"


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def _issued(contract: str = CONTRACT, card: str = CARD) -> integ.CardIssued:
    return integ.CardIssued(contract=contract, card_uid=card, school_id=SCHOOL, school_tz=TZ,
                            student_id=f"stu-{contract}", class_name="5Б",
                            birth_date="2014-03-08", issued_at=NOW - timedelta(days=1))


def _top_up(amount: int, payment: str = "pay-1", *, contract: str = CONTRACT,
            sub: str = "canteen", email: str | None = None) -> integ.TopUpReceived:
    return integ.TopUpReceived(payment_id=payment, contract=contract, amount=amount,
                               sub_balance=sub, channel="bank_card", paid_at=NOW,
                               receipt_email=email)


def _sale(sale_id: str = "till-1-0001", price: int = 85_00, *, category: str = "hot_meal",
          card: str = CARD) -> integ.CanteenSaleRequested:
    return integ.CanteenSaleRequested(
        sale_id=sale_id, terminal_id="izh-42-till-1", school_id=SCHOOL, card_uid=card,
        items=[integ.SaleItem(sku="borsch", name="Борщ", category=category, qty=1,
                              unit_price=price)], sold_at=NOW)


async def _wallet(balance: int = 0) -> tuple[FakeRuntime, Handlers]:
    """Wallet with the card issued and, if ``balance``, that much on the canteen balance."""
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))
    if balance:
        await h.on_top_up(rt.inbound(_top_up(balance, "pay-seed"), key=CONTRACT))
    rt.fake_uow.sent.clear()
    rt.fake_uow.replies.clear()
    return rt, h


def _parent(rt: FakeRuntime, role: str = "primary") -> str:
    return rt.token(Role.PARENT, children=[ChildGrant(contract=CONTRACT, role=role)])


def _staff(rt: FakeRuntime, role: Role = Role.SCHOOL_ADMIN, school: str = SCHOOL) -> str:
    return rt.token(role, account_id="acc_staff00001",
                    school_id=None if role is Role.SUPPORT else school)


async def _balances(rt: FakeRuntime, h: Handlers) -> wire.Balances:
    before = len(rt.fake_uow.replies)
    await h.on_get_balance(rt.inbound(wire.GetBalance(contract=CONTRACT), token=_parent(rt)))
    reply = rt.fake_uow.replies[before].message
    assert isinstance(reply, wire.BalanceReply) and reply.balances is not None, reply
    return reply.balances


# --- integrators: cards and top-ups -------------------------------------------------------------

async def test_an_issued_card_opens_the_account_once():
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    msg = rt.inbound(_issued(), key=CONTRACT)
    await h.on_card_issued(msg)
    [opened] = rt.emitted(wire.AccountOpened)
    assert (opened.contract, opened.school_id) == (CONTRACT, SCHOOL)
    await rt.redelivered_changes_nothing(h.on_card_issued, msg)
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))  # sent again by the issuer
    assert len(rt.emitted(wire.AccountOpened)) == 1


async def test_a_top_up_is_credited_with_a_receipt_and_a_repeated_payment_once():
    rt, h = await _wallet()
    msg = rt.inbound(_top_up(500_00, email="mum@example.ru"), key=CONTRACT)
    await h.on_top_up(msg)
    [applied] = rt.emitted(wire.TopUpApplied)
    assert (applied.amount, applied.balances.canteen) == (500_00, 500_00)
    [receipt] = rt.emitted(wire.ReceiptIssued)
    assert (receipt.payment_id, receipt.email) == ("pay-1", "mum@example.ru")
    await rt.redelivered_changes_nothing(h.on_top_up, msg)
    await h.on_top_up(rt.inbound(_top_up(500_00), key=CONTRACT))  # the bank sends it again
    assert (await _balances(rt, h)).canteen == 500_00


async def test_a_payment_id_reused_for_another_amount_is_rejected_to_the_payer():
    rt, h = await _wallet()
    await h.on_top_up(rt.inbound(_top_up(500_00), key=CONTRACT))
    await h.on_top_up(rt.inbound(_top_up(700_00), key=CONTRACT))
    [rejected] = rt.emitted(wire.TopUpRejected)
    assert (rejected.payment_id, rejected.reason) == ("pay-1", "payment_id_conflict")
    assert (await _balances(rt, h)).canteen == 500_00


async def test_a_top_up_before_the_card_is_parked_then_credited_when_the_card_comes():
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_top_up(rt.inbound(_top_up(300_00), key=CONTRACT))
    assert rt.emitted() == []
    assert await rt.db.wallet_parked_top_ups.count_documents({}) == 1
    await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))
    [applied] = rt.emitted(wire.TopUpApplied)
    assert applied.balances.canteen == 300_00
    assert await rt.db.wallet_parked_top_ups.count_documents({}) == 0


async def test_a_parked_payment_whose_card_never_comes_is_rejected_for_a_refund():
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_top_up(rt.inbound(_top_up(300_00), key=CONTRACT))
    await h.expire_parked_top_ups()
    assert rt.emitted(wire.TopUpRejected) == []  # not yet past the wait
    parked = await rt.db.wallet_parked_top_ups.find_one({"_id": "pay-1"})
    assert parked is not None
    await rt.db.wallet_parked_top_ups.update_one(  # parked two days ago
        {"_id": "pay-1"}, {"$set": {"parked_ms": parked["parked_ms"] - timedelta(days=2)}})
    await h.expire_parked_top_ups()
    [rejected] = rt.emitted(wire.TopUpRejected)
    assert (rejected.payment_id, rejected.reason) == ("pay-1", "unknown_contract")
    assert await rt.db.wallet_parked_top_ups.count_documents({}) == 0


async def test_a_reissued_card_moves_the_money_to_the_new_contract():
    rt, h = await _wallet(400_00)
    msg = rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract="40012346", new_card_uid="04A2B3C4D5E6F8",
        school_id=SCHOOL, school_tz=TZ, class_name="5Б", reissued_at=NOW), key=CONTRACT)
    await h.on_card_reissued(msg)
    [moved] = rt.emitted(wire.AccountReissued)
    assert (moved.new_contract, moved.moved.canteen) == ("40012346", 400_00)
    await rt.redelivered_changes_nothing(h.on_card_reissued, msg)


async def test_a_reissue_of_an_unknown_contract_is_dead_lettered_with_its_code():
    rt, h = await _wallet()
    with pytest.raises(Rejected) as rejected:
        await h.on_card_reissued(rt.inbound(integ.CardReissued(
            old_contract="40099999", new_contract="40012346", new_card_uid="04A2B3C4D5E6F8",
            school_id=SCHOOL, school_tz=TZ, class_name="5Б", reissued_at=NOW),
            key="40099999"))
    assert rejected.value.code == "unknown_contract"


async def test_a_failed_planned_payment_is_told_to_the_parent():
    rt, h = await _wallet(100_00)
    await h.on_set_auto_top_up(rt.inbound(wire.SetAutoTopUp(
        request_id="a-1", contract=CONTRACT, enabled=True, threshold=200_00, amount=500_00),
        token=_parent(rt)))
    await h.on_sale(rt.inbound(_sale(price=10_00), key=CARD))
    [asked] = rt.emitted(wire.AutoTopUpRequested)
    await h.on_auto_top_up_failed(rt.inbound(integ.AutoTopUpCollectionFailed(
        request_id=asked.request_id, contract=CONTRACT, reason="card_declined",
        failed_at=NOW), key=CONTRACT))
    [failed] = rt.emitted(wire.AutoTopUpFailed)
    assert (failed.request_id, failed.reason, failed.amount) == (
        asked.request_id, "card_declined", 500_00)


# --- canteen sales and fares --------------------------------------------------------------------

async def test_a_sale_is_posted_and_the_till_gets_its_decision():
    rt, h = await _wallet(200_00)
    msg = rt.inbound(_sale(), key=CARD)
    await h.on_sale(msg)
    [decision] = rt.emitted(wire.SaleDecision)
    assert decision.approved and decision.paid_money == 85_00
    [posted] = rt.emitted(wire.SalePosted)
    assert posted.balances.canteen == 115_00
    await rt.redelivered_changes_nothing(h.on_sale, msg)


async def test_a_sale_without_money_or_with_an_unknown_card_is_declined():
    rt, h = await _wallet(50_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    await h.on_sale(rt.inbound(_sale("till-1-0002", card="04FFFFFFFFFFFF"),
                               key="04FFFFFFFFFFFF"))
    assert [(d.approved, d.reason) for d in rt.emitted(wire.SaleDecision)] == [
        (False, "insufficient_funds"), (False, "unknown_card")]
    assert [d.reason for d in rt.emitted(wire.SaleDeclined)] == ["insufficient_funds",
                                                                 "unknown_card"]
    assert (await _balances(rt, h)).canteen == 50_00


async def test_a_fare_is_debited_and_an_unknown_contract_declined():
    rt, h = await _wallet()
    await h.on_top_up(rt.inbound(_top_up(100_00, "pay-t", sub="transit"), key=CONTRACT))
    await h.on_fare_assessed(rt.inbound(transit.FareAssessed(
        ride_id="ride-1", contract=CONTRACT, card_uid=CARD, amount=33_00, tapped_at=NOW),
        key=CONTRACT))
    [debited] = rt.emitted(wire.FareDebited)
    assert (debited.amount, debited.balances.transit) == (33_00, 67_00)
    await h.on_fare_assessed(rt.inbound(transit.FareAssessed(
        ride_id="ride-2", contract="40099999", card_uid="04FFFFFFFFFFFF", amount=33_00,
        tapped_at=NOW), key="40099999"))
    [declined] = rt.emitted(wire.FareDeclined)
    assert (declined.contract, declined.reason) == ("40099999", "unknown_card")


async def test_a_corrected_fare_is_refunded_and_one_for_an_unknown_contract_dead_lettered():
    rt, h = await _wallet()
    await h.on_top_up(rt.inbound(_top_up(100_00, "pay-t", sub="transit"), key=CONTRACT))
    await h.on_fare_assessed(rt.inbound(transit.FareAssessed(
        ride_id="ride-1", contract=CONTRACT, card_uid=CARD, amount=33_00, tapped_at=NOW),
        key=CONTRACT))

    def corrected(contract: str) -> Any:
        return rt.inbound(transit.FareCorrected(
            correction_id=f"corr-{contract}", ride_id="ride-1", contract=contract,
            refund=33_00, new_fare=0, explanation="transfer_free", corrected_at=NOW),
            key=contract)

    await h.on_fare_corrected(corrected(CONTRACT))
    [refunded] = rt.emitted(wire.FareRefunded)
    assert (refunded.amount, refunded.balances.transit) == (33_00, 100_00)
    with pytest.raises(Rejected) as rejected:
        await h.on_fare_corrected(corrected("40099999"))
    assert rejected.value.code == "unknown_contract"


# --- app commands -------------------------------------------------------------------------------

async def test_the_primary_sets_controls_and_a_blocked_category_is_declined_at_the_till():
    rt, h = await _wallet(500_00)
    await h.on_set_controls(rt.inbound(wire.SetControls(
        request_id="c-1", contract=CONTRACT, blocked_categories=["sweets"]), token=_parent(rt)))
    assert rt.reply() == CommandAccepted(request_id="c-1")
    [changed] = rt.emitted(wire.ControlsChanged)
    assert changed.contract == CONTRACT
    await h.on_sale(rt.inbound(_sale(category="sweets"), key=CARD))
    [decision] = rt.emitted(wire.SaleDecision)
    assert (decision.approved, decision.reason) == (False, "blocked_category")


async def test_the_controls_set_are_read_back_to_a_guardian_and_refused_to_a_stranger():
    rt, h = await _wallet(500_00)

    async def controls(token: str) -> wire.ControlsReply:
        rt.fake_uow.replies.clear()
        await h.on_get_controls(rt.inbound(wire.GetControls(contract=CONTRACT), token=token))
        reply = rt.fake_uow.replies[0].message
        assert isinstance(reply, wire.ControlsReply), reply
        return reply

    untouched = await controls(_parent(rt, "co_guardian"))
    assert untouched.daily_limits == wire.DailyLimits()
    assert (untouched.blocked_categories, untouched.allergens, untouched.card_blocked) == (
        [], [], False)
    assert untouched.auto_top_up is not None and untouched.auto_top_up.enabled is False
    await h.on_set_controls(rt.inbound(wire.SetControls(
        request_id="c-1", contract=CONTRACT, daily_limits=wire.DailyLimits(canteen=100_00),
        blocked_categories=["sweets", "fast_food"], blocked_items=["cola-05"],
        allergens=["nuts"], low_balance_threshold=150_00), token=_parent(rt)))
    await h.on_set_auto_top_up(rt.inbound(wire.SetAutoTopUp(
        request_id="a-1", contract=CONTRACT, enabled=True, threshold=100_00, amount=500_00),
        token=_parent(rt)))
    await h.on_block_card(rt.inbound(wire.BlockCard(request_id="b-1", contract=CONTRACT),
                                     token=_parent(rt)))
    read = await controls(_parent(rt, "co_guardian"))
    assert read.daily_limits == wire.DailyLimits(canteen=100_00)
    assert read.blocked_categories == ["fast_food", "sweets"]
    assert (read.blocked_items, read.allergens) == (["cola-05"], ["nuts"])
    assert read.low_balance_threshold == 150_00
    assert read.auto_top_up == wire.AutoTopUp(enabled=True, threshold=100_00, amount=500_00,
                                              sub_balance="canteen")
    assert (read.card_blocked, read.block_reason) == (True, "lost")
    rt.fake_uow.replies.clear()
    stranger = rt.token(Role.PARENT, children=[ChildGrant(contract="40099999", role="primary")])
    await h.on_get_controls(rt.inbound(wire.GetControls(contract=CONTRACT), token=stranger))
    assert rt.error_code() == "forbidden"


async def test_a_co_guardian_may_not_set_controls_and_an_unknown_contract_is_refused():
    rt, h = await _wallet()
    await h.on_set_controls(rt.inbound(wire.SetControls(
        request_id="c-1", contract=CONTRACT, blocked_categories=["sweets"]),
        token=_parent(rt, "co_guardian")))
    assert rt.error_code() == "forbidden"
    rt.fake_uow.replies.clear()
    other = rt.token(Role.PARENT, children=[ChildGrant(contract="40099999", role="primary")])
    await h.on_set_controls(rt.inbound(wire.SetControls(
        request_id="c-2", contract="40099999", blocked_categories=["sweets"]), token=other))
    assert rt.error_code() == "unknown_contract"
    assert rt.emitted() == []


async def test_a_blocked_card_is_declined_until_it_is_unblocked():
    rt, h = await _wallet(500_00)
    await h.on_block_card(rt.inbound(wire.BlockCard(request_id="b-1", contract=CONTRACT),
                                     token=_parent(rt)))
    assert [e.contract for e in rt.emitted(wire.CardBlocked)] == [CONTRACT]
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    await h.on_unblock_card(rt.inbound(wire.UnblockCard(request_id="b-2", contract=CONTRACT),
                                       token=_parent(rt)))
    assert [e.contract for e in rt.emitted(wire.CardUnblocked)] == [CONTRACT]
    await h.on_sale(rt.inbound(_sale("till-1-0002"), key=CARD))
    assert [(d.approved, d.reason) for d in rt.emitted(wire.SaleDecision)] == [
        (False, "card_blocked"), (True, None)]


async def test_money_moves_between_sub_balances_once_per_request():
    rt, h = await _wallet(300_00)
    move = wire.MoveMoney(request_id="mv-1", contract=CONTRACT, from_sub_balance="canteen",
                          to_sub_balance="transit", amount=100_00)
    await h.on_move_money(rt.inbound(move, token=_parent(rt)))
    await h.on_move_money(rt.inbound(move, token=_parent(rt)))  # a client retry
    [moved] = rt.emitted(wire.MoneyMoved)
    assert (moved.balances.canteen, moved.balances.transit) == (200_00, 100_00)
    balances = await _balances(rt, h)
    assert (balances.canteen, balances.transit) == (200_00, 100_00)


async def test_moving_more_than_there_is_is_refused_with_the_domain_code():
    rt, h = await _wallet(50_00)
    await h.on_move_money(rt.inbound(wire.MoveMoney(
        request_id="mv-1", contract=CONTRACT, from_sub_balance="canteen",
        to_sub_balance="transit", amount=100_00), token=_parent(rt)))
    assert rt.error_code() == "insufficient_funds"
    assert rt.emitted() == []


async def test_a_disputed_sale_approved_by_the_school_admin_is_refunded():
    rt, h = await _wallet(200_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    await h.on_open_dispute(rt.inbound(wire.OpenDispute(
        request_id="dsp-1", contract=CONTRACT, operation_id="till-1-0001", line=0,
        comment="not served"), token=_parent(rt)))
    [opened] = rt.emitted(wire.DisputeOpened)
    assert (opened.dispute_id, opened.operation_id) == ("dsp-1", "till-1-0001")
    await h.on_resolve_dispute(rt.inbound(wire.ResolveDispute(
        request_id="r-1", contract=CONTRACT, dispute_id="dsp-1", approve=True, refund=85_00),
        token=_staff(rt)))
    [resolved] = rt.emitted(wire.DisputeResolved)
    assert (resolved.approved, resolved.refunded) == (True, 85_00)
    assert (await _balances(rt, h)).canteen == 200_00


async def test_an_admin_of_another_school_may_not_resolve_a_dispute():
    rt, h = await _wallet(200_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    await h.on_open_dispute(rt.inbound(wire.OpenDispute(
        request_id="dsp-1", contract=CONTRACT, operation_id="till-1-0001", line=0),
        token=_parent(rt)))
    rt.fake_uow.replies.clear()
    await h.on_resolve_dispute(rt.inbound(wire.ResolveDispute(
        request_id="r-1", contract=CONTRACT, dispute_id="dsp-1", approve=True, refund=85_00),
        token=_staff(rt, school="izh-school-7")))
    assert rt.error_code() == "forbidden"
    assert rt.emitted(wire.DisputeResolved) == []


async def test_support_refunds_a_sale_line_once_per_request():
    rt, h = await _wallet(200_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    refund = wire.RefundSaleLine(request_id="rf-1", contract=CONTRACT, sale_id="till-1-0001",
                                 line=0, amount=85_00)
    await h.on_refund_sale_line(rt.inbound(refund, token=_staff(rt, Role.SUPPORT)))
    await h.on_refund_sale_line(rt.inbound(refund, token=_staff(rt, Role.SUPPORT)))
    [line] = rt.emitted(wire.SaleLineRefunded)
    assert (line.refund_id, line.money) == ("staff:rf-1", 85_00)
    assert (await _balances(rt, h)).canteen == 200_00


async def test_a_school_admin_sets_the_grace_meal_and_a_child_eats_on_credit():
    rt, h = await _wallet()
    await h.on_set_grace_meal(rt.inbound(wire.SetGraceMeal(
        request_id="g-1", school_id=SCHOOL, enabled=True, max_debt=150_00), token=_staff(rt)))
    assert rt.reply() == CommandAccepted(request_id="g-1")
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    [granted] = rt.emitted(wire.GraceMealGranted)
    assert granted.debt == 85_00
    rt.fake_uow.replies.clear()
    await h.on_set_grace_meal(rt.inbound(wire.SetGraceMeal(
        request_id="g-2", school_id=SCHOOL, enabled=False), token=_parent(rt)))
    assert rt.error_code() == "forbidden"


# --- queries ------------------------------------------------------------------------------------

async def test_a_balance_is_answered_to_a_guardian_and_refused_to_a_stranger():
    rt, h = await _wallet(120_00)
    assert (await _balances(rt, h)).canteen == 120_00
    rt.fake_uow.replies.clear()
    stranger = rt.token(Role.PARENT, children=[ChildGrant(contract="40099999", role="primary")])
    await h.on_get_balance(rt.inbound(wire.GetBalance(contract=CONTRACT), token=stranger))
    assert rt.error_code() == "forbidden"
    with pytest.raises(Rejected) as rejected:  # no reply topic: an event, dead-lettered
        await h.on_get_balance(rt.inbound(wire.GetBalance(contract=CONTRACT), token=stranger,
                                          reply_to=""))
    assert rejected.value.code == "forbidden"


async def test_a_statement_lists_the_operations_and_refuses_an_unknown_filter():
    rt, h = await _wallet(200_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    await h.on_get_statement(rt.inbound(wire.GetStatement(contract=CONTRACT, csv=True),
                                        token=_parent(rt)))
    statement = rt.reply()
    assert isinstance(statement, wire.StatementReply)
    assert [(x.kind, x.operation_id, x.amount) for x in statement.lines] == [
        ("topup", "pay-seed", 200_00), ("sale", "till-1-0001", -85_00)]
    assert statement.csv is not None and "till-1-0001" in statement.csv
    rt.fake_uow.replies.clear()
    await h.on_get_statement(rt.inbound(wire.GetStatement(contract=CONTRACT, kinds=["gift"]),
                                        token=_parent(rt)))
    assert rt.error_code() == "invalid_filter"


async def test_the_sales_report_of_a_day_is_answered_to_the_schools_staff_only():
    rt, h = await _wallet(200_00)
    await h.on_sale(rt.inbound(_sale(), key=CARD))
    day = "2026-09-01"
    await h.on_get_sales_report(rt.inbound(wire.GetSalesReport(school_id=SCHOOL, date=day),
                                           token=_staff(rt, Role.CANTEEN_OPERATOR)))
    report = rt.reply()
    assert [(x.category, x.quantity, x.amount) for x in report.lines] == [  # type: ignore[attr-defined]
        ("hot_meal", 1, 85_00)]
    rt.fake_uow.replies.clear()
    await h.on_get_sales_report(rt.inbound(wire.GetSalesReport(school_id=SCHOOL, date=day),
                                           token=_staff(rt, Role.CANTEEN_OPERATOR,
                                                        "izh-school-7")))
    assert rt.error_code() == "forbidden"


async def test_a_command_without_a_token_is_refused_unauthenticated():
    rt, h = await _wallet()
    await h.on_block_card(rt.inbound(wire.BlockCard(request_id="b-1", contract=CONTRACT),
                                     reply_to=APP_REPLIES))
    assert rt.error_code() == "unauthenticated"
    assert rt.emitted() == []


# --- ticks --------------------------------------------------------------------------------------

async def test_bonus_points_expire_twelve_months_after_the_month_they_were_earned():
    rt, h = await _wallet(500_00)
    await h.on_sale(rt.inbound(_sale(price=100_00), key=CARD))
    [posted] = rt.emitted(wire.SalePosted)
    assert posted.bonus_accrued > 0
    assert await h.expire_bonuses() == 0
    rt.now = datetime(2027, 9, 30, 18, 0, tzinfo=UTC)  # 23:00 local on the last day
    assert await h.expire_bonuses() == 0
    rt.now = datetime(2027, 9, 30, 19, 0, tzinfo=UTC)
    assert await h.expire_bonuses() == posted.bonus_accrued
    [expired] = rt.emitted(wire.BonusExpired)
    assert expired.points == posted.bonus_accrued
