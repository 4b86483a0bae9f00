from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from services.wallet.domain import (
    Account,
    DailyLimits,
    LedgerEntry,
    LineStatus,
    NotLoaded,
    StatementKind,
    SubBalance,
    event_to_doc,
    filter_statement,
    statement_csv,
    statement_lines,
)
from tests.unit.wallet.wallet_builders import NOW, TZ, at, funded, meal

pytestmark = pytest.mark.unit

_ALLOWED = (str, int, bool, type(None), datetime)


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, datetime):
        return value.tzinfo is not None
    return isinstance(value, _ALLOWED)


def _busy_account() -> Account:
    account = funded(general=1000_00, transit=100_00, grace=150_00)
    account.set_daily_limits(DailyLimits(total=500_00, canteen=300_00), now=NOW)
    account.set_allergens(["nuts"], now=NOW)
    account.sale("s1", terminal_id="t1", items=[meal(100_00), meal(20_00, sku="tea")], now=at(1))
    account.sale("s2", terminal_id="t1",
                 items=[meal(50_00, sku="bar", allergens=("nuts",))], now=at(2))
    account.debit_fare("ride-1", 36_00, now=at(3))
    account.refund_fare("c1", "ride-1", 6_00, now=at(4))
    account.open_dispute("d1", sale_id="s1", line_no=1, now=at(5))
    account.move_money("mv", source=SubBalance.GENERAL, target=SubBalance.CANTEEN,
                       amount=10_00, now=at(6))
    account.refund_sale_line("r1", "s1", 0, 10_00, staff_id="acc_staff0001", now=at(7))
    return account


def test_an_account_round_trips_through_a_plain_document() -> None:
    account = _busy_account()
    doc = account.to_doc()
    assert _plain(doc)
    restored = Account.from_doc(doc)
    assert restored.to_doc() == doc
    assert restored.balances == account.balances
    assert restored.version == account.version


def test_a_document_with_naive_datetimes_from_pymongo_loads_as_utc() -> None:
    doc = _busy_account().to_doc()
    doc["opened_at"] = doc["opened_at"].replace(tzinfo=None)
    assert Account.from_doc(doc).opened_at.tzinfo is UTC


def test_a_restored_account_still_recognises_duplicates() -> None:
    busy = _busy_account()
    sale = [(row.kind, row.plain) for row in busy.history() if row.key == "s1"]
    account = Account.from_doc(busy.to_doc(), sale)
    assert account.sale("s1", terminal_id="t1",
                        items=[meal(100_00), meal(20_00, sku="tea")], now=at(9)).replayed


def test_the_document_keeps_only_open_records_and_a_key_never_loaded_is_no_new_operation() -> None:
    busy = _busy_account()
    doc = busy.to_doc()
    assert not any(kind in doc for kind in ("sales", "rides", "top_ups", "disputes"))
    assert {kind for kind, _ in doc["open"]} <= {"rides", "disputes"}
    account = Account.from_doc(doc, absent={"sales": ["s-new"]})
    assert account.sales.get("s-new") is None  # looked up by the store: truly new
    with pytest.raises(NotLoaded):
        account.sales.get("s1")  # never looked up: must not pass for a new sale
    with pytest.raises(NotLoaded):
        account.sale("s1", terminal_id="t1", items=[meal(100_00)], now=at(9))
    assert Account.from_doc(doc, complete=True).sales.get("s1") is None


def test_a_document_of_the_earlier_layout_loads_with_its_records() -> None:
    busy = _busy_account()
    doc = busy.to_doc()
    for row in busy.history():
        doc.setdefault(row.kind, []).append(row.plain)
    account = Account.from_doc(doc)
    assert account.sales.get("s1") is not None and account.sales.get("s-new") is None
    assert statement_lines(account) == statement_lines(busy)


def test_ledger_entries_and_events_become_plain_documents() -> None:
    account = _busy_account()
    entries = account.pull_entries()
    assert all(_plain(e.to_doc()) for e in entries)
    assert [LedgerEntry.from_doc(e.to_doc()) for e in entries] == entries
    assert len({e.entry_id for e in entries}) == len(entries)
    assert all(_plain(event_to_doc(e)) for e in account.pull_events())


def test_the_statement_lists_every_operation_with_items_and_statuses() -> None:
    lines = statement_lines(_busy_account())
    by_id = {line.operation_id: line for line in lines}
    assert by_id["s1"].status is LineStatus.DISPUTED
    assert by_id["s1"].items[1].sku == "tea"
    assert by_id["s1"].amount == -120_00
    assert by_id["s2"].status is LineStatus.DECLINED and by_id["s2"].amount == 0
    assert "allergen" in by_id["s2"].description
    assert by_id["ride-1"].status is LineStatus.PARTIALLY_REFUNDED
    assert by_id["r1"].kind is StatementKind.REFUND and by_id["r1"].amount == 10_00
    assert [line.at for line in lines] == sorted(line.at for line in lines)


def test_the_statement_filters_by_period_kind_and_status() -> None:
    lines = statement_lines(_busy_account())
    purchases = filter_statement(lines, kinds={StatementKind.PURCHASE})
    assert [line.operation_id for line in purchases] == ["s1", "s2"]
    declined = filter_statement(lines, statuses={LineStatus.DECLINED})
    assert [line.operation_id for line in declined] == ["s2"]
    window = filter_statement(lines, start=at(2), end=at(4))
    assert [line.operation_id for line in window] == ["s2", "ride-1"]


def test_the_csv_shows_local_time_rouble_amounts_and_items() -> None:
    text = statement_csv(statement_lines(_busy_account()), time_zone=TZ)
    rows = list(csv.DictReader(io.StringIO(text)))
    s1 = next(row for row in rows if row["operation_id"] == "s1")
    assert (s1["date"], s1["time"]) == ("2026-09-01", "09:01:00")
    assert s1["amount_rub"] == "-120.00"
    assert s1["items"] == "Борщ x1 (100.00); Борщ x1 (20.00)"


def test_the_csv_neutralises_formula_like_names_from_tills() -> None:
    account = funded(general=1000_00)
    account.sale("s1", terminal_id="t1", items=[meal(10_00, name="=HYPERLINK(1)")], now=NOW)
    text = statement_csv(statement_lines(account), time_zone=TZ)
    assert "'=HYPERLINK(1)" in text
