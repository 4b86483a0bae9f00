"""Plain builders shared by the wallet domain tests (no fixtures needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.wallet.domain import Account, LedgerEntry, SaleItem, SubBalance, check_ledger

# 09:00 in Yekaterinburg (UTC+5), a Tuesday.
NOW = datetime(2026, 9, 1, 4, 0, tzinfo=UTC)
TZ = "Asia/Yekaterinburg"
CONTRACT = "40012345"


def at(minutes: int = 0, *, days: int = 0) -> datetime:
    return NOW + timedelta(days=days, minutes=minutes)


def new_account(contract: str = CONTRACT, *, grace: int = 0) -> Account:
    return Account.open(
        contract=contract,
        card_uid="04A2B3C4D5E6F7",
        school_id="izh-school-42",
        time_zone=TZ,
        now=NOW,
        grace_meal_limit=grace,
    )


def funded(general: int = 0, canteen: int = 0, transit: int = 0, *, grace: int = 0) -> Account:
    account = new_account(grace=grace)
    seeds = ((SubBalance.GENERAL, general), (SubBalance.CANTEEN, canteen),
             (SubBalance.TRANSIT, transit))
    for sub, amount in seeds:
        if amount:
            account.top_up(f"seed-{sub.value}", amount, sub_balance=sub, now=NOW)
    account.pull_events()
    return account


def meal(
    price: int = 85_00,
    *,
    qty: int = 1,
    sku: str = "borsch",
    category: str = "hot_meal",
    allergens: tuple[str, ...] = (),
    name: str = "Борщ",
) -> SaleItem:
    return SaleItem(sku, name, category, allergens, qty, price)


def assert_ledger_consistent(account: Account, entries: list[LedgerEntry]) -> None:
    assert check_ledger(account, entries) == []
