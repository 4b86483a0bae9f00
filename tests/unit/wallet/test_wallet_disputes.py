from __future__ import annotations

import pytest

from services.wallet.domain import (
    DisputeStatus,
    RejectionReason,
    WalletRejected,
    check_ledger,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded, meal

pytestmark = pytest.mark.unit

STAFF = "acc_staff0001"


def test_a_disputed_sale_line_approved_by_staff_is_refunded() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00), meal(20_00, sku="tea")], now=NOW)
    opened = account.open_dispute("d1", sale_id="s1", line_no=1, comment="no tea", now=at(1))
    assert (opened.status, opened.disputed_amount) == (DisputeStatus.OPEN, 20_00)
    approved = account.approve_dispute("d1", refund_amount=20_00, staff_id=STAFF, now=at(2))
    assert approved.status is DisputeStatus.APPROVED
    assert account.balances.general == 1000_00 - 100_00
    assert account.sales["s1"].line_refunded == [0, 20_00]
    assert check_ledger(account, account.pull_entries()) == []


def test_approving_a_dispute_twice_refunds_once() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    account.open_dispute("d1", sale_id="s1", line_no=0, now=at(1))
    first = account.approve_dispute("d1", refund_amount=50_00, staff_id=STAFF, now=at(2))
    again = account.approve_dispute("d1", refund_amount=50_00, staff_id=STAFF, now=at(3))
    assert again == first and again.replayed
    assert account.balances.general == 950_00
    with pytest.raises(WalletRejected) as error:
        account.approve_dispute("d1", refund_amount=60_00, staff_id=STAFF, now=at(3))
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


def test_a_refund_can_never_exceed_what_was_charged_for_the_line() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    account.refund_sale_line("r1", "s1", 0, 70_00, staff_id=STAFF, now=at(1))
    account.open_dispute("d1", sale_id="s1", line_no=0, now=at(2))
    with pytest.raises(WalletRejected) as error:
        account.approve_dispute("d1", refund_amount=30_01, staff_id=STAFF, now=at(3))
    assert error.value.reason is RejectionReason.REFUND_EXCEEDS_CHARGE
    assert account.disputes["d1"].status is DisputeStatus.OPEN
    account.approve_dispute("d1", refund_amount=30_00, staff_id=STAFF, now=at(3))
    assert account.balances.general == 1000_00
    with pytest.raises(WalletRejected) as again:
        account.open_dispute("d2", sale_id="s1", line_no=0, now=at(4))
    assert again.value.reason is RejectionReason.NOTHING_TO_REFUND


def test_a_rejected_dispute_refunds_nothing_and_cannot_be_approved_later() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    account.open_dispute("d1", sale_id="s1", line_no=0, now=at(1))
    result = account.reject_dispute("d1", staff_id=STAFF, note="eaten", now=at(2))
    assert result.status is DisputeStatus.REJECTED
    assert account.reject_dispute("d1", staff_id=STAFF, now=at(3)).replayed
    with pytest.raises(WalletRejected) as error:
        account.approve_dispute("d1", refund_amount=1_00, staff_id=STAFF, now=at(3))
    assert error.value.reason is RejectionReason.DISPUTE_NOT_OPEN
    assert account.balances.general == 900_00


def test_only_one_open_dispute_per_line() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    account.open_dispute("d1", sale_id="s1", line_no=0, now=at(1))
    with pytest.raises(WalletRejected) as error:
        account.open_dispute("d2", sale_id="s1", line_no=0, now=at(1))
    assert error.value.reason is RejectionReason.DISPUTE_ALREADY_OPEN


def test_a_ride_can_be_disputed_and_refunded() -> None:
    account = funded(transit=100_00)
    account.debit_fare("ride-1", 36_00, now=NOW)
    account.open_dispute("d1", ride_id="ride-1", now=at(1))
    account.approve_dispute("d1", refund_amount=36_00, staff_id=STAFF, now=at(2))
    assert account.balances.transit == 100_00
    assert account.rides["ride-1"].refunded == 36_00


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ({"sale_id": "nope", "line_no": 0}, RejectionReason.UNKNOWN_SALE),
        ({"sale_id": "s1", "line_no": 5}, RejectionReason.UNKNOWN_SALE_LINE),
        ({"ride_id": "nope"}, RejectionReason.UNKNOWN_RIDE),
        ({"sale_id": "s1", "line_no": 0, "ride_id": "r"}, RejectionReason.INVALID_DISPUTE),
        ({"sale_id": "s1"}, RejectionReason.INVALID_DISPUTE),
    ],
)
def test_a_dispute_must_name_one_existing_line(
    target: dict[str, object], reason: RejectionReason
) -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=NOW)
    with pytest.raises(WalletRejected) as error:
        account.open_dispute("d1", now=at(1), **target)  # type: ignore[arg-type]
    assert error.value.reason is reason


def test_refunding_a_sale_paid_partly_with_points_gives_money_first_then_points() -> None:
    account = funded(general=10_000_00)
    account.sale("s0", terminal_id="t1", items=[meal(3000_00)], now=NOW)
    account.sale("s1", terminal_id="t1", items=[meal(100_00)], bonus_points=30_00, now=at(1))
    bonus_before = account.balances.bonus
    result = account.refund_sale_line("r1", "s1", 0, 100_00, staff_id=STAFF, now=at(2))
    assert (result.money, result.bonus_restored) == (70_00, 30_00)
    assert result.bonus_clawed_back == 70
    assert account.balances.bonus == bonus_before + 30_00 - 70
    assert check_ledger(account, account.pull_entries()) == []


def test_a_refunded_grace_meal_clears_the_debt() -> None:
    account = funded(grace=150_00)
    account.sale("s1", terminal_id="t1", items=[meal(90_00)], now=NOW)
    account.refund_sale_line("r1", "s1", 0, 90_00, staff_id=STAFF, now=at(1))
    assert account.balances.canteen == 0
    assert account.grace_debt == 0
