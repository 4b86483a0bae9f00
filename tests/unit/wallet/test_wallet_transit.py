from __future__ import annotations

import pytest

from services.wallet.domain import (
    DailyLimits,
    DeclineReason,
    FareDeclined,
    GraceDebtSettled,
    RejectionReason,
    SubBalance,
    WalletRejected,
    check_ledger,
    statement_lines,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded

pytestmark = pytest.mark.unit


def test_a_fare_draws_from_transit_first_then_general() -> None:
    account = funded(general=100_00, transit=20_00)
    result = account.debit_fare("ride-1", 36_00, now=NOW)
    assert (result.paid_transit, result.paid_general) == (20_00, 16_00)
    assert (account.balances.transit, account.balances.general) == (0, 84_00)


def test_a_fare_never_draws_on_canteen_and_is_declined_when_transit_and_general_are_short() -> None:
    account = funded(canteen=500_00, transit=10_00)
    result = account.debit_fare("ride-1", 36_00, now=NOW)
    assert result.reason is DeclineReason.INSUFFICIENT_FUNDS
    assert account.balances.canteen == 500_00
    assert any(isinstance(e, FareDeclined) for e in account.pull_events())


def test_a_fare_on_a_blocked_card_is_declined() -> None:
    account = funded(transit=100_00)
    account.block_card(now=NOW)
    assert account.debit_fare("ride-1", 36_00, now=NOW).reason is DeclineReason.CARD_BLOCKED


def test_daily_limits_do_not_apply_to_fares_the_ride_has_already_happened() -> None:
    account = funded(transit=100_00)
    account.set_daily_limits(DailyLimits(total=0), now=NOW)
    assert account.debit_fare("ride-1", 36_00, now=NOW).approved


def test_a_late_duplicate_ride_is_not_charged_twice() -> None:
    account = funded(transit=100_00)
    first = account.debit_fare("ride-1", 36_00, now=NOW)
    assert account.debit_fare("ride-1", 36_00, now=at(90)) == first
    assert account.balances.transit == 64_00
    with pytest.raises(WalletRejected) as error:
        account.debit_fare("ride-1", 40_00, now=at(90))
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


def test_a_fare_correction_refunds_to_the_pockets_that_paid() -> None:
    account = funded(general=100_00, transit=20_00)
    account.debit_fare("ride-1", 36_00, now=NOW)
    account.refund_fare("corr-1", "ride-1", 30_00, now=at(5))
    assert (account.balances.transit, account.balances.general) == (20_00, 94_00)
    assert check_ledger(account, account.pull_entries()) == []


def test_fare_refunds_never_exceed_what_the_ride_was_charged() -> None:
    account = funded(transit=100_00)
    account.debit_fare("ride-1", 36_00, now=NOW)
    account.refund_fare("corr-1", "ride-1", 30_00, now=at(5))
    with pytest.raises(WalletRejected) as error:
        account.refund_fare("corr-2", "ride-1", 6_01, now=at(6))
    assert error.value.reason is RejectionReason.REFUND_EXCEEDS_CHARGE
    account.refund_fare("corr-2", "ride-1", 6_00, now=at(6))
    assert account.balances.transit == 100_00


def test_a_repeated_fare_correction_refunds_once() -> None:
    account = funded(transit=100_00)
    account.debit_fare("ride-1", 36_00, now=NOW)
    first = account.refund_fare("corr-1", "ride-1", 10_00, now=at(5))
    assert account.refund_fare("corr-1", "ride-1", 10_00, now=at(6)) == first
    assert account.balances.transit == 74_00


def test_refunding_an_unknown_ride_or_more_than_is_owed_is_rejected() -> None:
    account = funded()
    account.debit_fare("ride-1", 36_00, now=NOW)
    with pytest.raises(WalletRejected) as unknown:
        account.refund_fare("corr-1", "ride-x", 1_00, now=NOW)
    with pytest.raises(WalletRejected) as too_much:
        account.refund_fare("corr-2", "ride-1", 36_01, now=NOW)
    assert unknown.value.reason is RejectionReason.UNKNOWN_RIDE
    assert too_much.value.reason is RejectionReason.REFUND_EXCEEDS_CHARGE


def test_a_correction_of_an_owed_fare_writes_it_down_and_the_top_up_collects_the_new_price(
) -> None:
    """The overcharge: a day priced 35.00 must collect 35.00, not 70.00. A late tap made the
    declined ride-1 free (a transfer) and its own ride-0 cost the fare."""
    account = funded()
    account.debit_fare("ride-1", 35_00, now=NOW)
    account.debit_fare("ride-0", 35_00, now=at(1))
    result = account.refund_fare("ride-1:corr:ride-0", "ride-1", 35_00, now=at(2))
    assert result.paid_back == 0
    assert account.balances.general == 0 and account.fares_unpaid

    account.top_up("pay-1", 100_00, sub_balance=SubBalance.TRANSIT, now=at(10))

    assert account.balances.transit == 100_00 - 35_00
    assert not account.fares_unpaid
    assert check_ledger(account, account.pull_entries()) == []
    refund_line = [line for line in statement_lines(account)
                   if line.operation_id == "ride-1:corr:ride-0"]
    assert [(line.amount, line.total) for line in refund_line] == [(0, 35_00)]


def test_a_correction_that_cancels_the_last_owed_fare_settles_the_debt() -> None:
    account = funded()
    account.debit_fare("ride-1", 35_00, now=NOW)
    account.pull_events()

    account.refund_fare("ride-1:corr:ride-0", "ride-1", 35_00, now=at(2))
    replay = account.refund_fare("ride-1:corr:ride-0", "ride-1", 35_00, now=at(3))

    [settled] = [e for e in account.pull_events() if isinstance(e, GraceDebtSettled)]
    assert (settled.payment_id, settled.correction_id) == (None, "ride-1:corr:ride-0")
    assert replay.replayed and not account.fares_unpaid


def test_a_correction_of_a_fare_declined_for_a_blocked_card_moves_nothing() -> None:
    account = funded(transit=100_00)
    account.block_card(now=NOW)
    account.debit_fare("ride-1", 35_00, now=NOW)

    account.refund_fare("ride-1:corr:ride-0", "ride-1", 35_00, now=at(2))

    assert account.balances.transit == 100_00 and not account.fares_unpaid


def test_a_declined_fare_is_debt_that_the_next_top_up_pays_never_written_off() -> None:
    account = funded(transit=10_00)
    account.debit_fare("ride-1", 36_00, now=NOW)
    account.debit_fare("ride-2", 36_00, now=at(1))
    account.pull_events()

    account.top_up("pay-canteen", 500_00, sub_balance=SubBalance.CANTEEN, now=at(10))
    assert account.fares_unpaid, "canteen money is for meals: it does not pay fares"
    account.top_up("pay-1", 40_00, sub_balance=SubBalance.TRANSIT, now=at(11))
    assert account.fares_unpaid and account.balances.transit == 14_00  # ride-1 paid, not ride-2
    assert not [e for e in account.pull_events() if isinstance(e, GraceDebtSettled)]
    account.top_up("pay-2", 100_00, sub_balance=SubBalance.TRANSIT, now=at(12))

    [settled] = [e for e in account.pull_events() if isinstance(e, GraceDebtSettled)]
    assert (settled.payment_id, settled.fares, settled.fares_total) == ("pay-2", ("ride-2",), 36_00)
    assert not account.fares_unpaid
    assert account.balances.transit == 10_00 + 40_00 + 100_00 - 2 * 36_00
    assert account.balances.canteen == 500_00
    assert check_ledger(account, account.pull_entries()) == []
    paid = [line for line in statement_lines(account) if line.operation_id == "ride-2"]
    assert [(line.status.value, line.amount) for line in paid] == [("declined", 0),
                                                                   ("completed", -36_00)]
    # the replayed decision stays a decline; a transit correction may refund the paid fare
    assert not account.debit_fare("ride-2", 36_00, now=at(20)).approved
    account.refund_fare("corr-1", "ride-2", 6_00, now=at(21))
    assert account.balances.transit == 10_00 + 40_00 + 100_00 - 2 * 36_00 + 6_00
