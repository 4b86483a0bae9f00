from __future__ import annotations

import pytest

from services.wallet.domain import (
    DeclineReason,
    ReportDecline,
    ReportLine,
    ReportRefund,
    reissue_card,
    sales_report,
)
from tests.unit.wallet.wallet_builders import NOW, at, funded, meal

pytestmark = pytest.mark.unit

STAFF = "acc_staff0001"
DAY = "2026-09-01"  # NOW is 09:00 on that day in Yekaterinburg


def test_the_report_sums_one_school_day_per_till_and_category_with_declines_and_refunds() -> None:
    rich, poor = funded(canteen=1000_00), funded(canteen=10_00)
    soup, buns = meal(50_00, sku="soup", category="soup"), meal(20_00, sku="bun",
                                                                  category="bakery", qty=2)
    rich.sale("s1", terminal_id="till-a", items=[soup, buns], now=NOW)
    rich.sale("s2", terminal_id="till-b", items=[soup], now=at(5))
    rich.sale("s-tomorrow", terminal_id="till-a", items=[soup], now=at(days=1))
    poor.sale("s3", terminal_id="till-a", items=[soup], now=at(10))  # declined
    rich.refund_sale_line("r1", "s2", 0, 30_00, staff_id=STAFF, now=at(20))
    report = sales_report([rich, poor], day=DAY)
    assert (report.approved_sales, report.approved_amount, report.paid_money) == (2, 140_00,
                                                                                  140_00)
    assert report.lines == [ReportLine("till-a", "bakery", 1, 2, 40_00),
                            ReportLine("till-a", "soup", 1, 1, 50_00),
                            ReportLine("till-b", "soup", 1, 1, 50_00)]
    assert report.declines == [ReportDecline(DeclineReason.INSUFFICIENT_FUNDS, 1, 50_00)]
    assert report.refund_lines == [ReportRefund("till-b", "soup", 1, 30_00, 30_00)]
    assert (report.refunds, report.refunded_amount, report.refunded_money) == (1, 30_00, 30_00)


def test_a_refund_counts_on_the_day_it_was_made_and_a_closed_account_keeps_its_sales() -> None:
    account = funded(canteen=200_00)
    account.sale("s1", terminal_id="till-a", items=[meal(50_00)], now=NOW)
    account.refund_sale_line("r1", "s1", 0, 50_00, staff_id=STAFF, now=at(days=1))
    reissue_card(account, reissue_id="re-1", new_contract="40099999", new_card_uid="04AAFF01",
                 now=at(days=1, minutes=1))
    today, tomorrow = (sales_report([account], day=DAY),
                       sales_report([account], day="2026-09-02"))
    assert (today.approved_sales, today.refunds) == (1, 0)
    assert (tomorrow.approved_sales, tomorrow.refunds, tomorrow.refunded_money) == (0, 1, 50_00)
    assert sales_report([account], day="2026-08-31").lines == []
