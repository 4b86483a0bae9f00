from __future__ import annotations

from collections.abc import Callable

import pytest

from services.wallet import outbound
from services.wallet.domain import (
    Account,
    AutoTopUpFailed,
    AutoTopUpRequested,
    AutoTopUpSettings,
    CardBlocked,
    ControlsChanged,
    DailyLimits,
    LowBalanceReached,
    RejectionReason,
    SubBalance,
    TopUpChannel,
    WalletRejected,
    check_ledger,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded, meal, new_account

pytestmark = pytest.mark.unit


def _low(account_events: list[object]) -> list[LowBalanceReached]:
    return [e for e in account_events if isinstance(e, LowBalanceReached)]


def _auto(account_events: list[object]) -> list[AutoTopUpRequested]:
    return [e for e in account_events if isinstance(e, AutoTopUpRequested)]


def test_blocking_keeps_the_balance_and_unblocking_restores_spending() -> None:
    account = funded(general=100_00)
    assert account.block_card(now=NOW, by="acc_parent0001")
    assert not account.block_card(now=NOW)
    assert [type(e) for e in account.pull_events()] == [CardBlocked]
    assert account.balances.general == 100_00
    assert account.unblock_card(now=at(1))
    assert account.sale("s1", terminal_id="t1", items=[meal()], now=at(2)).approved


def test_setting_a_control_to_its_current_value_changes_nothing() -> None:
    account = new_account()
    assert account.set_daily_limits(DailyLimits(total=300_00), now=NOW)
    version = account.version
    assert not account.set_daily_limits(DailyLimits(total=300_00), now=NOW)
    assert account.version == version
    assert not account.set_blocked_categories([], now=NOW)


def test_a_control_change_is_recorded_as_an_event_with_the_new_value() -> None:
    account = new_account()
    account.pull_events()
    account.set_blocked_categories(["fast_food", "sweets"], now=NOW, by="acc_parent0001")
    (event,) = account.pull_events()
    assert isinstance(event, ControlsChanged)
    assert (event.what, event.value) == ("blocked_categories", ["fast_food", "sweets"])


def test_a_negative_limit_is_rejected() -> None:
    account = new_account()
    with pytest.raises(WalletRejected) as error:
        account.set_daily_limits(DailyLimits(canteen=-1), now=NOW)
    assert error.value.reason is RejectionReason.INVALID_AMOUNT


def test_money_moves_between_sub_balances_with_balanced_entries() -> None:
    account = funded(general=100_00)
    result = account.move_money("mv-1", source=SubBalance.GENERAL, target=SubBalance.CANTEEN,
                                amount=40_00, now=NOW)
    assert (result.balances.general, result.balances.canteen) == (60_00, 40_00)
    entries = account.pull_entries()
    moved = [e for e in entries if e.operation_kind == "transfer"]
    assert {(e.sub_balance, e.amount, e.counter_account) for e in moved} == {
        (SubBalance.GENERAL, -40_00, "internal:transfer"),
        (SubBalance.CANTEEN, 40_00, "internal:transfer"),
    }
    assert check_ledger(account, entries) == []


def test_moving_more_than_the_source_holds_is_rejected() -> None:
    account = funded(general=100_00)
    with pytest.raises(WalletRejected) as error:
        account.move_money("mv-1", source=SubBalance.GENERAL, target=SubBalance.TRANSIT,
                           amount=100_01, now=NOW)
    assert error.value.reason is RejectionReason.INSUFFICIENT_FUNDS
    assert account.balances.general == 100_00


def test_a_repeated_transfer_moves_once_and_a_changed_one_conflicts() -> None:
    account = funded(general=100_00)
    general, canteen = SubBalance.GENERAL, SubBalance.CANTEEN
    first = account.move_money("mv-1", source=general, target=canteen, amount=40_00, now=NOW)
    again = account.move_money("mv-1", source=general, target=canteen, amount=40_00, now=at(1))
    assert again == first
    assert account.balances.canteen == 40_00
    with pytest.raises(WalletRejected) as error:
        account.move_money("mv-1", source=general, target=canteen, amount=41_00, now=at(1))
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


def test_low_balance_is_reported_once_per_downward_crossing_with_days_of_lunches() -> None:
    account = funded(general=1000_00)
    account.set_low_balance_threshold(300_00, now=NOW)
    events: list[object] = []
    for day in range(9):
        account.sale(f"s{day}", terminal_id="t1", items=[meal(100_00)], now=at(days=day))
        events += account.pull_events()
    alerts = _low(events)
    assert len(alerts) == 1
    assert alerts[0].balance == 200_00
    assert alerts[0].days_of_lunches_left == 2


def test_a_top_up_above_the_threshold_re_arms_the_low_balance_alert() -> None:
    account = funded(general=250_00)
    account.set_low_balance_threshold(200_00, now=NOW)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    account.sale("s2", terminal_id="t1", items=[meal(10_00)], now=at(1))
    assert len(_low(account.pull_events())) == 1
    account.top_up("pay-small", 10_00, now=at(2))
    account.sale("s3", terminal_id="t1", items=[meal(10_00)], now=at(3))
    assert _low(account.pull_events()) == []
    account.top_up("pay-big", 100_00, now=at(4))
    account.sale("s4", terminal_id="t1", items=[meal(50_00)], now=at(5))
    assert len(_low(account.pull_events())) == 1


def test_without_canteen_history_the_prediction_is_none() -> None:
    account = funded(general=250_00, transit=100_00)
    account.set_low_balance_threshold(300_00, now=NOW)
    account.top_up("pay-1", 100_00, now=NOW)
    account.move_money("mv-1", source=SubBalance.GENERAL, target=SubBalance.TRANSIT,
                       amount=100_00, now=at(1))
    (alert,) = _low(account.pull_events())
    assert alert.days_of_lunches_left is None


def test_the_prediction_averages_the_last_fourteen_days_with_purchases() -> None:
    account = funded(general=100_000_00)
    for day in range(20):
        price = 1000_00 if day < 6 else 100_00
        account.sale(f"s{day}", terminal_id="t1", items=[meal(price)], now=at(days=day * 2))
    funds = account.balances.meal_funds
    assert account.days_of_lunches_left() == funds // 100_00


def test_auto_top_up_requests_once_until_the_matching_top_up_arrives() -> None:
    account = funded(canteen=300_00)
    account.set_auto_top_up(AutoTopUpSettings(True, 200_00, 500_00, SubBalance.CANTEEN), now=NOW)
    events: list[object] = []
    for n in range(3):
        account.sale(f"s{n}", terminal_id="t1", items=[meal(60_00)], now=at(n))
        events += account.pull_events()
    (request,) = _auto(events)
    assert (request.request_id, request.amount) == ("auto-40012345-1", 500_00)
    account.top_up("auto-pay-1", 500_00, sub_balance=SubBalance.CANTEEN,
                   channel=TopUpChannel.AUTO_TOP_UP, auto_top_up_request_id=request.request_id,
                   now=at(10))
    assert account.auto_top_up_pending is None
    for n in range(3, 12):
        account.sale(f"s{n}", terminal_id="t1", items=[meal(60_00)], now=at(n + 10))
    second = _auto(account.pull_events())
    assert [r.request_id for r in second] == ["auto-40012345-2"]


def test_enabling_auto_top_up_below_the_threshold_requests_at_once() -> None:
    account = funded(canteen=50_00)
    account.set_auto_top_up(AutoTopUpSettings(True, 100_00, 300_00), now=NOW)
    assert len(_auto(account.pull_events())) == 1


def test_a_failed_auto_top_up_is_told_once_and_the_next_debit_below_the_threshold_asks_again(
) -> None:
    account = funded(canteen=50_00)
    account.set_auto_top_up(AutoTopUpSettings(True, 100_00, 300_00), now=NOW)
    account.pull_events()
    assert account.cancel_auto_top_up("auto-40012345-1", reason="card_declined", now=at(1))
    (failed,) = account.pull_events()
    assert failed == AutoTopUpFailed("40012345", "auto-40012345-1", 300_00, "card_declined",
                                     at(1))
    version = account.version
    # Redelivered, or a request never made: nothing changes, nothing is told twice.
    assert not account.cancel_auto_top_up("auto-40012345-1", reason="card_declined", now=at(2))
    assert not account.cancel_auto_top_up("auto-40012345-9", reason="card_declined", now=at(2))
    assert (account.version, account.pull_events()) == (version, [])
    account.sale("s1", terminal_id="t1", items=[meal(1_00)], now=at(3))
    assert [r.request_id for r in _auto(account.pull_events())] == ["auto-40012345-2"]


def test_a_failure_of_an_answered_auto_top_up_changes_nothing() -> None:
    account = funded(canteen=50_00)
    account.set_auto_top_up(AutoTopUpSettings(True, 100_00, 300_00), now=NOW)
    account.top_up("auto-pay-1", 300_00, sub_balance=SubBalance.CANTEEN,
                   channel=TopUpChannel.AUTO_TOP_UP, auto_top_up_request_id="auto-40012345-1",
                   now=at(1))
    account.pull_events()
    assert not account.cancel_auto_top_up("auto-40012345-1", reason="card_declined", now=at(2))
    assert account.pull_events() == []
    assert account.balances.canteen == 350_00


def _lift_by_sale_refund(account: Account) -> None:
    account.refund_sale_line("r1", "s-cross", 0, 100_00, staff_id="acc_staff0001", now=at(2))


def _lift_by_fare_refund(account: Account) -> None:
    account.refund_fare("c1", "ride-1", 100_00, now=at(2))


def _lift_by_move(account: Account) -> None:
    account.top_up("pay-transit", 100_00, sub_balance=SubBalance.TRANSIT, now=at(2))
    account.move_money("mv-1", source=SubBalance.TRANSIT, target=SubBalance.CANTEEN,
                       amount=100_00, now=at(2))


def _lift_by_dispute(account: Account) -> None:
    account.dispute_operation("d1", "s-cross", 0, now=at(2))
    account.approve_dispute("d1", refund_amount=100_00, staff_id="acc_staff0001", now=at(2))


@pytest.mark.parametrize("lift", [_lift_by_sale_refund, _lift_by_fare_refund, _lift_by_move,
                                  _lift_by_dispute],
                         ids=["sale refund", "fare refund", "money move", "approved dispute"])
def test_anything_that_lifts_meal_funds_back_to_the_threshold_re_arms_the_low_balance_alert(
        lift: Callable[[Account], None]) -> None:
    account = funded(general=200_00, canteen=150_00)
    account.debit_fare("ride-1", 100_00, now=NOW)  # from general: meal funds 250
    account.set_low_balance_threshold(200_00, now=NOW)
    account.sale("s-cross", terminal_id="t1", items=[meal(100_00)], now=at(1))
    assert len(_low(account.pull_events())) == 1  # 250 -> 150
    lift(account)  # back to 250
    assert account.balances.meal_funds == 250_00
    account.sale("s-again", terminal_id="t1", items=[meal(100_00)], now=at(3))
    (again,) = _low(account.pull_events())
    assert again.balance == 150_00


def test_the_low_balance_alert_names_the_pocket_whose_debit_crossed_the_threshold() -> None:
    from_canteen = funded(general=100_00, canteen=200_00)
    from_canteen.set_low_balance_threshold(250_00, now=NOW)
    from_canteen.sale("s1", terminal_id="t1", items=[meal(100_00)], now=at(1))
    (alert,) = _low(from_canteen.pull_events())
    assert (alert.sub_balance, alert.balance) == (SubBalance.CANTEEN, 200_00)

    crossed_in_canteen = funded(general=100_00, canteen=30_00)
    crossed_in_canteen.set_low_balance_threshold(120_00, now=NOW)
    crossed_in_canteen.sale("s1", terminal_id="t1", items=[meal(50_00)], now=at(1))
    (alert,) = _low(crossed_in_canteen.pull_events())  # 130 -> 100 by canteen, then 80
    assert (alert.sub_balance, alert.balance) == (SubBalance.CANTEEN, 80_00)

    into_general = funded(general=100_00, canteen=30_00)
    into_general.set_low_balance_threshold(100_00, now=NOW)
    into_general.sale("s1", terminal_id="t1", items=[meal(50_00)], now=at(1))
    (alert,) = _low(into_general.pull_events())  # 130 -> 100 by canteen, 80 by general
    assert (alert.sub_balance, alert.balance) == (SubBalance.GENERAL, 80_00)

    by_fare = funded(general=100_00, canteen=50_00)
    by_fare.set_low_balance_threshold(120_00, now=NOW)
    by_fare.debit_fare("ride-1", 40_00, now=at(1))
    (alert,) = _low(by_fare.pull_events())
    assert (alert.sub_balance, alert.balance) == (SubBalance.GENERAL, 110_00)
    wired = outbound.to_wire(alert)
    assert wired is not None and wired[2].model_dump()["sub_balance"] == "general"

    by_move = funded(general=100_00, canteen=50_00)
    by_move.set_low_balance_threshold(120_00, now=NOW)
    by_move.move_money("mv-1", source=SubBalance.CANTEEN, target=SubBalance.TRANSIT,
                       amount=50_00, now=at(1))
    (alert,) = _low(by_move.pull_events())
    assert (alert.sub_balance, alert.balance) == (SubBalance.CANTEEN, 100_00)


def test_enabled_auto_top_up_needs_a_positive_amount() -> None:
    account = new_account()
    with pytest.raises(WalletRejected):
        account.set_auto_top_up(AutoTopUpSettings(True, 100_00, 0), now=NOW)
