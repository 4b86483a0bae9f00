"""The canteen's day at one school, for the supplier and the school admin: pure aggregation of
the sales and refunds the accounts remember, per till and category, so the size of the answer
is bounded by tills x categories however many sales there were."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.wallet.domain.account import Account
from services.wallet.domain.values import DeclineReason, local_day


@dataclass(frozen=True, slots=True)
class ReportLine:
    terminal_id: str
    category: str
    sales: int  # approved sales with at least one line of the category
    quantity: int
    amount: int  # face value, kopecks


@dataclass(frozen=True, slots=True)
class ReportDecline:
    reason: DeclineReason
    sales: int
    amount: int


@dataclass(frozen=True, slots=True)
class ReportRefund:
    terminal_id: str
    category: str
    refunds: int
    amount: int
    money: int


@dataclass(slots=True)
class SalesReport:
    day: str
    approved_sales: int = 0
    approved_amount: int = 0
    paid_money: int = 0
    paid_bonus: int = 0
    declined_sales: int = 0
    declined_amount: int = 0
    refunds: int = 0
    refunded_amount: int = 0
    refunded_money: int = 0
    lines: list[ReportLine] = field(default_factory=list)
    declines: list[ReportDecline] = field(default_factory=list)
    refund_lines: list[ReportRefund] = field(default_factory=list)


def sales_report(accounts: Iterable[Account], *, day: str) -> SalesReport:
    """Sales and declines sold on the school-local ``day`` (ISO date) and refunds made that
    day (staff refunds and approved disputes, whatever day the sale was)."""
    report = SalesReport(day)
    sold: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    declined: dict[DeclineReason, list[int]] = defaultdict(lambda: [0, 0])
    refunded: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for account in accounts:
        for sale in account.sales.values():
            if sale.day != day:
                continue
            if not sale.approved:
                assert sale.reason is not None
                declined[sale.reason][0] += 1
                declined[sale.reason][1] += sale.total
                report.declined_sales += 1
                report.declined_amount += sale.total
                continue
            report.approved_sales += 1
            report.approved_amount += sale.total
            report.paid_money += sale.paid_money
            report.paid_bonus += sale.bonus_used
            categories: Counter[str] = Counter()
            for item in sale.items:
                line = sold[(sale.terminal_id, item.category)]
                line[1] += item.qty
                line[2] += item.total
                categories[item.category] += 1
            for category in categories:
                sold[(sale.terminal_id, category)][0] += 1
        for refund in account.sale_refunds.values():
            if local_day(refund.at, account.time_zone).isoformat() != day:
                continue
            sale = account.sales[refund.sale_id]
            line = refunded[(sale.terminal_id, sale.items[refund.line_no].category)]
            line[0] += 1
            line[1] += refund.amount
            line[2] += refund.money
            report.refunds += 1
            report.refunded_amount += refund.amount
            report.refunded_money += refund.money
    report.lines = [ReportLine(t, c, *v) for (t, c), v in sorted(sold.items())]
    report.declines = [ReportDecline(r, *v) for r, v in sorted(declined.items())]
    report.refund_lines = [ReportRefund(t, c, *v) for (t, c), v in sorted(refunded.items())]
    return report
