from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.wallet.domain import (
    AccountStatus,
    DailyLimits,
    DeclineReason,
    GraceMealGranted,
    RejectionReason,
    SaleApproved,
    SaleDeclined,
    SaleItem,
    WalletRejected,
    check_ledger,
    reissue_card,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded, meal, new_account

pytestmark = pytest.mark.unit


def test_a_sale_draws_from_canteen_first_then_general() -> None:
    account = funded(general=100_00, canteen=50_00)
    result = account.sale("s1", terminal_id="t1", items=[meal(70_00)], now=NOW)
    assert result.approved
    assert (result.paid_canteen, result.paid_general) == (50_00, 20_00)
    assert (account.balances.canteen, account.balances.general) == (0, 80_00)


def test_an_approved_sale_keeps_its_items_and_accrues_one_percent_bonus_rounded_down() -> None:
    account = funded(general=1000_00)
    items = [meal(85_50), meal(12_99, sku="tea", name="Чай", category="drink", qty=2)]
    result = account.sale("s1", terminal_id="t1", items=items, now=NOW)
    assert result.total == 85_50 + 2 * 12_99
    assert result.bonus_accrued == (85_50 + 2 * 12_99) // 100
    assert account.sales["s1"].items == tuple(items)
    approved = [e for e in account.pull_events() if isinstance(e, SaleApproved)]
    assert approved[0].items == tuple(items)


def test_insufficient_funds_declines_and_changes_no_balance() -> None:
    account = funded(general=10_00, canteen=10_00)
    result = account.sale("s1", terminal_id="t1", items=[meal(30_00)], now=NOW)
    assert not result.approved
    assert result.reason is DeclineReason.INSUFFICIENT_FUNDS
    assert account.balances.money == 20_00
    assert [type(e) for e in account.pull_events()] == [SaleDeclined]


def test_a_blocked_card_is_declined_at_the_till() -> None:
    account = funded(general=100_00)
    account.block_card(now=NOW, reason="lost")
    result = account.sale("s1", terminal_id="t1", items=[meal()], now=NOW)
    assert result.reason is DeclineReason.CARD_BLOCKED
    assert account.balances.general == 100_00
    assert account.status is AccountStatus.BLOCKED


def test_a_blocked_category_is_declined_with_the_category_as_detail() -> None:
    account = funded(general=100_00)
    account.set_blocked_categories(["Sweets"], now=NOW)
    items = [meal(), meal(30_00, sku="cake", category="sweets")]
    result = account.sale("s1", terminal_id="t1", items=items, now=NOW)
    assert (result.reason, result.detail) == (DeclineReason.BLOCKED_CATEGORY, "sweets")


def test_a_blocked_item_is_declined() -> None:
    account = funded(general=100_00)
    account.set_blocked_items(["cola-05"], now=NOW)
    result = account.sale(
        "s1", terminal_id="t1", items=[meal(50_00, sku="cola-05", category="drink")], now=NOW
    )
    assert (result.reason, result.detail) == (DeclineReason.BLOCKED_ITEM, "cola-05")


def test_a_declared_allergen_is_a_hard_block_at_the_till() -> None:
    account = funded(general=100_00)
    account.set_allergens(["nuts", "Milk"], now=NOW)
    item = meal(40_00, sku="bun", category="bakery", allergens=("gluten", "milk"))
    result = account.sale("s1", terminal_id="t1", items=[item], now=NOW)
    assert (result.reason, result.detail) == (DeclineReason.ALLERGEN, "milk")


def test_a_closed_account_answers_account_closed_without_recording_the_sale() -> None:
    account = funded(general=100_00)
    reissue_card(account, reissue_id="r1", new_contract="40099999", new_card_uid="04FF", now=NOW)
    version = account.version
    result = account.sale("s1", terminal_id="t1", items=[meal()], now=NOW)
    assert result.reason is DeclineReason.ACCOUNT_CLOSED
    assert account.version == version
    assert "s1" not in account.sales


def test_unknown_card_is_a_reason_code_the_handler_can_use() -> None:
    assert DeclineReason.UNKNOWN_CARD.value == "unknown_card"


def test_the_total_daily_limit_declines_a_sale_that_would_exceed_it() -> None:
    account = funded(general=1000_00)
    account.set_daily_limits(DailyLimits(total=150_00), now=NOW)
    assert account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW).approved
    result = account.sale("s2", terminal_id="t1", items=[meal(60_00)], now=at(10))
    assert result.reason is DeclineReason.DAILY_LIMIT
    assert account.sale("s3", terminal_id="t1", items=[meal(50_00)], now=at(20)).approved
    assert account.spent_on(NOW).total == 150_00


def test_the_daily_limit_restarts_at_local_midnight_not_utc_midnight() -> None:
    account = funded(general=1000_00)
    account.set_daily_limits(DailyLimits(total=100_00), now=NOW)
    # 23:30 in Yekaterinburg (UTC+5) is still 18:30 UTC on the same UTC day.
    late = datetime(2026, 9, 1, 18, 30, tzinfo=UTC)
    after_midnight = datetime(2026, 9, 1, 19, 30, tzinfo=UTC)
    assert account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=late).approved
    assert not account.sale("s2", terminal_id="t1", items=[meal(1_00)], now=late).approved
    assert account.sale("s3", terminal_id="t1", items=[meal(100_00)], now=after_midnight).approved


def test_a_per_sub_balance_limit_caps_that_pocket_and_the_rest_comes_from_general() -> None:
    account = funded(general=500_00, canteen=500_00)
    account.set_daily_limits(DailyLimits(canteen=50_00), now=NOW)
    result = account.sale("s1", terminal_id="t1", items=[meal(80_00)], now=NOW)
    assert (result.paid_canteen, result.paid_general) == (50_00, 30_00)


def test_a_per_sub_balance_limit_that_leaves_the_sale_unpaid_is_a_daily_limit_decline() -> None:
    account = funded(general=0, canteen=500_00)
    account.set_daily_limits(DailyLimits(canteen=50_00), now=NOW)
    result = account.sale("s1", terminal_id="t1", items=[meal(80_00)], now=NOW)
    assert result.reason is DeclineReason.DAILY_LIMIT


def test_a_repeated_sale_returns_the_same_decision_and_debits_once() -> None:
    account = funded(general=100_00)
    first = account.sale("s1", terminal_id="t1", items=[meal()], now=NOW)
    again = account.sale("s1", terminal_id="t1", items=[meal()], now=at(1))
    assert again == first and again.replayed
    assert account.balances.general == 15_00


def test_a_repeated_declined_sale_stays_declined_even_after_a_top_up() -> None:
    account = funded(general=10_00)
    first = account.sale("s1", terminal_id="t1", items=[meal()], now=NOW)
    account.top_up("pay-2", 1000_00, now=at(1))
    assert account.sale("s1", terminal_id="t1", items=[meal()], now=at(2)) == first


def test_a_sale_id_reused_with_other_items_is_an_idempotency_conflict() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal()], now=NOW)
    with pytest.raises(WalletRejected) as error:
        account.sale("s1", terminal_id="t1", items=[meal(qty=2)], now=NOW)
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


@pytest.mark.parametrize(
    "items",
    [
        [],
        [SaleItem("x", "X", "drink", (), 0, 100)],
        [SaleItem("x", "X", "drink", (), 1, -100)],
        [SaleItem("x", "X", "drink", (), 1, 1.5)],  # type: ignore[arg-type]
        [SaleItem("", "X", "drink", (), 1, 100)],
    ],
)
def test_an_impossible_sale_is_rejected_as_invalid(items: list[SaleItem]) -> None:
    account = funded(general=1000_00)
    with pytest.raises(WalletRejected) as error:
        account.sale("s1", terminal_id="t1", items=items, now=NOW)
    assert error.value.reason is RejectionReason.INVALID_SALE
    assert "s1" not in account.sales


def test_bonus_points_reduce_the_money_paid_and_do_not_earn_bonus() -> None:
    account = funded(general=10_000_00)
    account.sale("s1", terminal_id="t1", items=[meal(5000_00)], now=NOW)
    assert account.balances.bonus == 50_00
    result = account.sale("s2", terminal_id="t1", items=[meal(100_00)], bonus_points=30_00,
                          now=at(1))
    assert (result.bonus_used, result.paid_money, result.bonus_accrued) == (30_00, 70_00, 70)
    assert account.balances.bonus == 50_00 - 30_00 + 70


def test_bonus_points_never_pay_for_an_excluded_category_nor_accrue_on_it() -> None:
    account = funded(general=10_000_00)
    account.sale("s0", terminal_id="t1", items=[meal(5000_00)], now=NOW)  # 50_00 points
    items = [meal(20_00), meal(60_00, sku="cake", category="sweets")]
    result = account.sale("s1", terminal_id="t1", items=items, bonus_points=50_00, now=at(1),
                          bonus_excluded_categories=["Sweets"])
    # Points pay for the meal only; the cake is paid with money and earns nothing.
    assert (result.bonus_used, result.paid_money) == (20_00, 60_00)
    assert result.bonus_accrued == 0
    assert account.balances.bonus == 30_00
    only_excluded = account.sale("s2", terminal_id="t1", items=[items[1]], bonus_points=30_00,
                                 now=at(2), bonus_excluded_categories=["sweets"])
    assert (only_excluded.bonus_used, only_excluded.paid_money) == (0, 60_00)
    assert only_excluded.bonus_accrued == 0
    assert check_ledger(account, account.pull_entries()) == []


def test_refunding_a_bonus_excluded_line_claws_back_no_points_it_never_earned() -> None:
    account = funded(general=10_000_00)
    items = [meal(100_00), meal(100_00, sku="cake", category="sweets")]
    account.sale("s1", terminal_id="t1", items=items, now=NOW,
                 bonus_excluded_categories=["sweets"])
    assert account.balances.bonus == 1_00  # 1 % of the meal only
    refund = account.refund_sale_line("r1", "s1", 1, 100_00, staff_id="acc_staff0001",
                                      now=at(1))
    assert (refund.money, refund.bonus_clawed_back) == (100_00, 0)
    assert account.balances.bonus == 1_00
    assert check_ledger(account, account.pull_entries()) == []


def test_asking_for_more_points_than_held_uses_only_what_is_held() -> None:
    account = funded(general=10_000_00)
    account.sale("s1", terminal_id="t1", items=[meal(1000_00)], now=NOW)
    result = account.sale("s2", terminal_id="t1", items=[meal(100_00)], bonus_points=99_99,
                          now=at(1))
    assert result.bonus_used == 10_00


def test_grace_meal_gives_one_meal_on_credit_within_the_school_bound() -> None:
    account = funded(general=20_00, grace=150_00)
    result = account.sale("s1", terminal_id="t1", items=[meal(90_00)], now=NOW)
    assert result.approved and result.grace_credit == 70_00
    assert account.balances.canteen == -70_00 and account.balances.general == 0
    assert any(isinstance(e, GraceMealGranted) for e in account.pull_events())
    assert check_ledger(account, account.pull_entries()) == []


def test_only_one_grace_meal_until_the_debt_is_settled() -> None:
    account = funded(grace=150_00)
    assert account.sale("s1", terminal_id="t1", items=[meal(50_00)], now=NOW).approved
    second = account.sale("s2", terminal_id="t1", items=[meal(10_00)], now=at(1))
    assert second.reason is DeclineReason.INSUFFICIENT_FUNDS
    account.top_up("pay-1", 50_00, now=at(2))
    assert account.sale("s3", terminal_id="t1", items=[meal(10_00)], now=at(3)).grace_credit


def test_a_meal_deeper_than_the_grace_bound_is_declined() -> None:
    account = funded(grace=150_00)
    result = account.sale("s1", terminal_id="t1", items=[meal(150_01)], now=NOW)
    assert result.reason is DeclineReason.INSUFFICIENT_FUNDS
    assert account.balances.canteen == 0


def test_without_the_school_setting_there_is_no_grace_meal() -> None:
    account = new_account()
    result = account.sale("s1", terminal_id="t1", items=[meal(1_00)], now=NOW)
    assert result.reason is DeclineReason.INSUFFICIENT_FUNDS


def test_a_grace_meal_still_respects_the_daily_limit() -> None:
    account = funded(grace=150_00)
    account.set_daily_limits(DailyLimits(total=50_00), now=NOW)
    result = account.sale("s1", terminal_id="t1", items=[meal(60_00)], now=NOW)
    assert result.reason is DeclineReason.DAILY_LIMIT
