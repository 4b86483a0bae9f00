from __future__ import annotations

import pytest

from services.wallet.domain import (
    Account,
    RejectionReason,
    SubBalance,
    TopUpChannel,
    TopUpCredited,
    WalletRejected,
    check_ledger,
    ledger_balances,
    unbalanced_operations,
)
from tests.unit.wallet.wallet_builders import CONTRACT, NOW, at, meal, new_account

pytestmark = pytest.mark.unit


def test_a_top_up_credits_the_general_balance_by_default_and_posts_balanced_entries() -> None:
    account = new_account()
    result = account.top_up("pay-1", 500_00, now=NOW)
    entries = account.pull_entries()
    assert result.balances.general == 500_00
    assert account.balances.general == 500_00
    assert ledger_balances(entries, CONTRACT).general == 500_00
    assert unbalanced_operations(entries) == {}
    assert {e.account for e in entries} == {CONTRACT, "external:topup"}
    assert check_ledger(account, entries) == []


def test_a_top_up_can_target_the_canteen_balance() -> None:
    account = new_account()
    account.top_up("pay-1", 300_00, sub_balance=SubBalance.CANTEEN, now=NOW)
    assert account.balances.canteen == 300_00
    assert account.balances.general == 0


def test_a_top_up_records_a_receipt_event_with_the_channel() -> None:
    account = new_account()
    account.pull_events()
    account.top_up("pay-1", 100_00, channel=TopUpChannel.TERMINAL, now=NOW)
    (event,) = account.pull_events()
    assert isinstance(event, TopUpCredited)
    assert (event.payment_id, event.amount, event.channel) == ("pay-1", 100_00, "terminal")


def test_the_same_payment_delivered_twenty_times_is_credited_once() -> None:
    account = new_account()
    first = account.top_up("pay-1", 500_00, now=NOW)
    version = account.version
    entries = account.pull_entries()
    account.pull_events()
    for _ in range(19):
        again = account.top_up("pay-1", 500_00, now=at(5))
        assert again == first
        assert again.replayed
    assert account.balances.general == 500_00
    assert account.version == version
    assert account.pull_entries() == []
    assert account.pull_events() == []
    assert check_ledger(account, entries) == []


def test_the_same_payment_id_with_another_amount_is_an_idempotency_conflict() -> None:
    account = new_account()
    account.top_up("pay-1", 500_00, now=NOW)
    with pytest.raises(WalletRejected) as error:
        account.top_up("pay-1", 600_00, now=NOW)
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT
    assert account.balances.general == 500_00


def test_the_same_payment_id_into_another_sub_balance_is_an_idempotency_conflict() -> None:
    account = new_account()
    account.top_up("pay-1", 500_00, now=NOW)
    with pytest.raises(WalletRejected) as error:
        account.top_up("pay-1", 500_00, sub_balance=SubBalance.TRANSIT, now=NOW)
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


@pytest.mark.parametrize("amount", [0, -100, 10**13, 1.5, True])
def test_an_impossible_amount_is_rejected_without_changing_anything(amount: object) -> None:
    account = new_account()
    version = account.version
    with pytest.raises(WalletRejected) as error:
        account.top_up("pay-1", amount, now=NOW)  # type: ignore[arg-type]
    assert error.value.reason is RejectionReason.INVALID_AMOUNT
    assert account.version == version
    assert account.balances.money == 0


def test_bonus_is_not_a_sub_balance_money_can_be_paid_into() -> None:
    account = new_account()
    with pytest.raises(WalletRejected) as error:
        account.top_up("pay-1", 100, sub_balance=SubBalance.BONUS, now=NOW)
    assert error.value.reason is RejectionReason.INVALID_SUB_BALANCE


def test_a_blocked_card_can_still_be_topped_up() -> None:
    account = new_account()
    account.block_card(now=NOW)
    account.top_up("pay-1", 100_00, now=NOW)
    assert account.balances.general == 100_00


def test_a_naive_clock_is_a_programming_error() -> None:
    account = new_account()
    with pytest.raises(ValueError):
        account.top_up("pay-1", 100, now=NOW.replace(tzinfo=None))


def test_an_account_needs_an_eight_digit_contract_and_a_real_time_zone() -> None:
    with pytest.raises(WalletRejected):
        Account.open(contract="1234", card_uid="04A2", school_id="s", time_zone="UTC", now=NOW)
    with pytest.raises(WalletRejected):
        Account.open(
            contract=CONTRACT, card_uid="04A2", school_id="s", time_zone="Mars/Base", now=NOW
        )


def test_a_top_up_pays_back_a_grace_meal_debt_first() -> None:
    account = new_account(grace=150_00)
    account.sale("sale-1", terminal_id="t1", items=[meal(90_00)], now=NOW)
    assert account.balances.canteen == -90_00
    result = account.top_up("pay-1", 100_00, now=at(60))
    assert result.grace_debt_settled == 90_00
    assert account.balances.canteen == 0
    assert account.balances.general == 10_00
    entries = account.pull_entries()
    assert check_ledger(account, entries) == []
