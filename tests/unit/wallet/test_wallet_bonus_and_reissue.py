from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.wallet.domain import (
    AccountStatus,
    BonusesExpired,
    DailyLimits,
    GraceDebtSettled,
    RejectionReason,
    SubBalance,
    WalletRejected,
    check_ledger,
    reissue_card,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded, meal

pytestmark = pytest.mark.unit


def test_points_of_a_month_expire_at_its_end_twelve_months_later() -> None:
    account = funded(general=10_000_00)
    account.sale("s1", terminal_id="t1", items=[meal(1000_00)], now=NOW)  # 1 Sep, local
    account.sale("s1b", terminal_id="t1", items=[meal(200_00)], now=at(days=29))  # 30 Sep
    account.sale("s2", terminal_id="t1", items=[meal(500_00)], now=at(days=40))  # October
    assert [lot.lot_id for lot in account.bonus_lots] == ["month:2026-09", "month:2026-10"]
    # September's lot burns at local midnight of 1 October 2027 (19:00 UTC the day before).
    assert account.expire_bonuses(now=datetime(2027, 9, 30, 18, 59, tzinfo=UTC)) == 0
    assert account.expire_bonuses(now=datetime(2027, 9, 30, 19, tzinfo=UTC)) == 12_00
    assert account.balances.bonus == 5_00
    events = [e for e in account.pull_events() if isinstance(e, BonusesExpired)]
    assert [e.lot_ids for e in events] == [("month:2026-09",)]
    assert check_ledger(account, account.pull_entries()) == []


def test_expiring_twice_posts_nothing_the_second_time() -> None:
    account = funded(general=10_000_00)
    account.sale("s1", terminal_id="t1", items=[meal(1000_00)], now=NOW)
    later = datetime(2028, 1, 1, tzinfo=UTC)
    account.expire_bonuses(now=later)
    version = account.version
    assert account.expire_bonuses(now=later) == 0
    assert account.version == version


def test_redemption_takes_the_oldest_lot_first_and_never_an_expired_one() -> None:
    account = funded(general=100_000_00)
    account.sale("s1", terminal_id="t1", items=[meal(1000_00)], now=NOW)
    account.sale("s2", terminal_id="t1", items=[meal(2000_00)], now=at(days=100))
    account.sale("s3", terminal_id="t1", items=[meal(10_00)], bonus_points=5_00, now=at(days=101))
    lots = {lot.lot_id: lot.remaining for lot in account.bonus_lots}
    assert lots == {"month:2026-09": 5_00, "month:2026-12": 20_00 + 5}
    after_first_expiry = datetime(2027, 10, 1, tzinfo=UTC)
    assert account.available_points(after_first_expiry) == 20_00 + 5
    result = account.sale("s4", terminal_id="t1", items=[meal(100_00)], bonus_points=100_00,
                          now=after_first_expiry)
    assert result.bonus_used == 20_00 + 5


def test_a_reissued_card_takes_over_balances_points_and_controls_and_the_old_one_closes() -> None:
    old = funded(general=100_00, canteen=50_00, transit=30_00)
    old.sale("s1", terminal_id="t1", items=[meal(40_00)], now=NOW)
    old.set_daily_limits(DailyLimits(total=300_00), now=NOW)
    old_entries = old.pull_entries()
    outcome = reissue_card(old, reissue_id="re-1", new_contract="40099999",
                           new_card_uid="04FFEE", now=at(10))
    new = outcome.new_account
    assert new is not None
    assert new.balances == outcome.record.moved
    assert new.balances.money == 140_00 and new.balances.bonus == 40
    assert new.limits == DailyLimits(total=300_00)
    assert new.predecessor is not None and new.predecessor.old_contract == old.contract
    assert old.status is AccountStatus.CLOSED
    assert old.successor is not None and old.successor.new_contract == "40099999"
    assert old.balances.money == 0 and old.balances.bonus == 0
    assert check_ledger(old, old_entries + old.pull_entries()) == []
    assert check_ledger(new, new.pull_entries()) == []


def test_a_closed_account_refuses_further_operations() -> None:
    old = funded(general=100_00)
    reissue_card(old, reissue_id="re-1", new_contract="40099999", new_card_uid="04FF", now=NOW)
    for call in (
        lambda: old.top_up("pay-9", 1_00, now=NOW),
        lambda: old.block_card(now=NOW),
        lambda: old.set_allergens(["nuts"], now=NOW),
        lambda: old.move_money("mv", source=SubBalance.GENERAL, target=SubBalance.CANTEEN,
                               amount=1, now=NOW),
    ):
        with pytest.raises(WalletRejected) as error:
            call()
        assert error.value.reason is RejectionReason.ACCOUNT_CLOSED


def test_replaying_a_reissue_creates_no_second_account_and_a_changed_one_conflicts() -> None:
    old = funded(general=100_00)
    reissue_card(old, reissue_id="re-1", new_contract="40099999", new_card_uid="04FF", now=NOW)
    again = reissue_card(old, reissue_id="re-1", new_contract="40099999", new_card_uid="04FF",
                         now=at(1))
    assert again.replayed and again.new_account is None
    with pytest.raises(WalletRejected) as error:
        reissue_card(old, reissue_id="re-1", new_contract="40088888", new_card_uid="04FF",
                     now=at(1))
    assert error.value.reason is RejectionReason.IDEMPOTENCY_CONFLICT


def test_a_grace_debt_follows_the_child_to_the_new_card() -> None:
    old = funded(grace=150_00)
    old.sale("s1", terminal_id="t1", items=[meal(90_00)], now=NOW)
    new = reissue_card(old, reissue_id="re-1", new_contract="40099999", new_card_uid="04FF",
                       now=at(1)).new_account
    assert new is not None and new.balances.canteen == -90_00
    new.top_up("pay-1", 100_00, now=at(2))
    assert new.balances.canteen == 0 and new.balances.general == 10_00


def test_a_reissue_moves_the_owed_fares_and_the_new_contract_collects_them() -> None:
    """Nothing owed is written off: the old account closes, the new one's top-up pays."""
    old = funded(transit=10_00)
    old.debit_fare("ride-owed", 36_00, now=NOW)
    old.debit_fare("ride-paid", 5_00, now=NOW)
    outcome = reissue_card(old, reissue_id="re-1", new_contract="40099999",
                           new_card_uid="04FF", now=at(5))
    new = outcome.new_account
    assert new is not None
    assert not old.fares_unpaid and new.fares_unpaid
    assert old.fare_successor("ride-owed") == "40099999"
    assert old.fare_successor("a-late-tap") == "40099999"
    assert new.fare_successor("ride-owed") is None

    new.top_up("pay-1", 100_00, sub_balance=SubBalance.TRANSIT, now=at(10))
    refund = new.refund_fare("ride-paid:corr:x", "ride-paid", 5_00, now=at(11))

    assert new.balances.transit == 5_00 + 100_00 - 36_00 + 5_00
    assert not new.fares_unpaid and refund.paid_back == 5_00
    [settled] = [e for e in new.pull_events() if isinstance(e, GraceDebtSettled)]
    assert settled.fares == ("ride-owed",)
    assert check_ledger(new, new.pull_entries()) == []
