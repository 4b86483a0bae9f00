"""The parents' statement: one line per operation, filters, and a CSV rendering."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from services.wallet.domain.account import Account
from services.wallet.domain.records import DisputeStatus, SaleItem
from services.wallet.domain.values import require_aware, zone


class StatementKind(StrEnum):
    TOP_UP = "top_up"
    PURCHASE = "purchase"
    FARE = "fare"
    REFUND = "refund"
    FARE_REFUND = "fare_refund"
    TRANSFER = "transfer"
    BONUS_EXPIRY = "bonus_expiry"
    REISSUE = "reissue"
    PAYOUT = "payout"


class LineStatus(StrEnum):
    COMPLETED = "completed"
    DECLINED = "declined"
    DISPUTED = "disputed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class StatementLine:
    """``amount`` is the signed effect on the money balances (0 for a declined operation or a
    move between sub-balances); ``total`` is the face value (what was asked, moved or paid);
    ``bonus`` is the signed change in points."""

    at: datetime
    kind: StatementKind
    operation_id: str
    status: LineStatus
    amount: int
    total: int
    bonus: int
    description: str
    items: tuple[SaleItem, ...] = ()
    seq: int = 0  # the account version the operation produced: orders equal instants
    tags: tuple[str, ...] = ()  # the family's tags on the line (kept apart from the account)


def _status(charged: int, refunded: int, disputed: bool) -> LineStatus:
    if disputed:
        return LineStatus.DISPUTED
    if refunded == 0:
        return LineStatus.COMPLETED
    return LineStatus.REFUNDED if refunded >= charged else LineStatus.PARTIALLY_REFUNDED


def statement_lines(account: Account) -> list[StatementLine]:
    """Every operation of the account by time; operations at the same instant in applied order."""
    open_disputes = [d for d in account.disputes.values() if d.status is DisputeStatus.OPEN]
    disputed_sales = {d.sale_id for d in open_disputes}
    disputed_rides = {d.ride_id for d in open_disputes}
    lines: list[StatementLine] = []
    add = lines.append
    completed = LineStatus.COMPLETED
    for t in account.top_ups.values():
        add(StatementLine(t.at, StatementKind.TOP_UP, t.payment_id, completed, t.amount, t.amount,
                          0, f"{t.channel.value} -> {t.sub_balance.value}", seq=t.seq))
    for s in account.sales.values():
        if s.approved:
            status = _status(s.total, s.refunded, s.sale_id in disputed_sales)
            note = f"terminal {s.terminal_id}"
            if s.grace_credit:
                note += "; grace meal on credit"
            add(StatementLine(s.at, StatementKind.PURCHASE, s.sale_id, status, -s.paid_money,
                              s.total, s.bonus_accrued - s.bonus_used, note, s.items, s.seq))
        else:
            note = f"{s.reason.value if s.reason else ''} {s.detail}".strip()
            add(StatementLine(s.at, StatementKind.PURCHASE, s.sale_id, LineStatus.DECLINED, 0,
                              s.total, 0, note, s.items, s.seq))
    for r in account.rides.values():
        # A ride inherited at a reissue belongs to the old contract's statement; only a debt
        # of it collected here shows (collections there happened before this account opened).
        inherited = r.inherited_from is not None
        if inherited:
            pass
        elif r.approved:
            status = _status(r.amount, r.refunded, r.ride_id in disputed_rides)
            add(StatementLine(r.at, StatementKind.FARE, r.ride_id, status, -r.amount, r.amount, 0,
                              "fare", seq=r.seq))
        else:
            add(StatementLine(r.at, StatementKind.FARE, r.ride_id, LineStatus.DECLINED, 0,
                              r.amount, 0, r.reason.value if r.reason else "", seq=r.seq))
        if r.collected_by is not None and r.collected_at is not None and not (
                inherited and r.collected_at < account.opened_at):
            status = _status(r.paid, r.refunded, r.ride_id in disputed_rides)
            add(StatementLine(r.collected_at, StatementKind.FARE, r.ride_id, status,
                              -r.paid, r.paid, 0,
                              f"declined fare paid from top-up {r.collected_by}",
                              seq=r.collected_seq))
    for f in account.fare_refunds.values():
        note = f"ride {f.ride_id}" if f.money else f"ride {f.ride_id}: fare lowered, not paid"
        add(StatementLine(f.at, StatementKind.FARE_REFUND, f.correction_id, completed, f.money,
                          f.amount, 0, note, seq=f.seq))
    for x in account.sale_refunds.values():
        add(StatementLine(x.at, StatementKind.REFUND, x.refund_id, completed, x.money, x.amount,
                          x.bonus_restored - x.bonus_clawed_back,
                          f"sale {x.sale_id} line {x.line_no}", seq=x.seq))
    for m in account.transfers.values():
        add(StatementLine(m.at, StatementKind.TRANSFER, m.transfer_id, completed, 0, m.amount, 0,
                          f"{m.source.value} -> {m.target.value}", seq=m.seq))
    for e in account.expiries.values():
        add(StatementLine(e.at, StatementKind.BONUS_EXPIRY, e.lot_id, completed, 0, 0, -e.points,
                          "bonus points expired", seq=e.seq))
    # The incoming reissue opens the new account (first line); the outgoing one closes the old.
    for link, sign, seq in ((account.predecessor, 1, 0), (account.successor, -1, account.version)):
        if link is not None:
            add(StatementLine(link.at, StatementKind.REISSUE, link.reissue_id, completed,
                              sign * link.moved.money, abs(link.moved.money),
                              sign * link.moved.bonus,
                              f"{link.old_contract} -> {link.new_contract}", seq=seq))
    if account.payout is not None:
        p = account.payout
        add(StatementLine(p.at, StatementKind.PAYOUT, p.payout_id, completed, -p.amount,
                          p.amount, 0, "balance paid out on leaving the school", seq=p.seq))
    lines.sort(key=lambda line: (line.at, line.seq))
    return lines


def with_tags(lines: Iterable[StatementLine],
              tags: Mapping[str, tuple[str, ...]]) -> list[StatementLine]:
    """The lines with the tags of their operation (``tags``: operation id -> tags)."""
    return [replace(line, tags=tags[line.operation_id]) if line.operation_id in tags else line
            for line in lines]


def _mentions(line: StatementLine, text: str) -> bool:
    """Whether ``text`` (case-folded) is part of the line's note, operation id or an item."""
    return any(text in value.casefold() for value in (
        line.description, line.operation_id, *(i.name for i in line.items)))


def filter_statement(
    lines: Iterable[StatementLine],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    kinds: Collection[StatementKind] | None = None,
    statuses: Collection[LineStatus] | None = None,
    text: str | None = None,
    tag: str | None = None,
    amount_min: int | None = None,
    amount_max: int | None = None,
) -> list[StatementLine]:
    """Lines with ``start <= at < end`` (either bound optional) of the given kinds/statuses,
    mentioning ``text`` (case-insensitive: the note, the operation id or an item's name),
    carrying ``tag`` (as :func:`~services.wallet.domain.tags.normalize_tag` keeps it) and
    whose amount's size (kopecks, the sign aside: a purchase of 45,50 ₽ is 4550) is within
    ``[amount_min, amount_max]``.

    For "a local day" pass local midnights converted to aware datetimes; instants are
    compared, so any time zone works.
    """
    lo = require_aware(start) if start is not None else None
    hi = require_aware(end) if end is not None else None
    needle = text.casefold() if text else None
    return [
        line
        for line in lines
        if (lo is None or line.at >= lo)
        and (hi is None or line.at < hi)
        and (kinds is None or line.kind in kinds)
        and (statuses is None or line.status in statuses)
        and (needle is None or _mentions(line, needle))
        and (tag is None or tag in line.tags)
        and (amount_min is None or abs(line.amount) >= amount_min)
        and (amount_max is None or abs(line.amount) <= amount_max)
    ]


CSV_HEADER = (
    "date", "time", "kind", "status", "amount_rub", "total_rub", "bonus_points",
    "operation_id", "description", "items", "tags",
)


def _rub(kopecks: int) -> str:
    sign = "-" if kopecks < 0 else ""
    rubles, kop = divmod(abs(kopecks), 100)
    return f"{sign}{rubles}.{kop:02d}"


def _text(value: str) -> str:
    # Names come from tills; a leading =, +, - or @ would run as a spreadsheet formula.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def statement_csv(lines: Iterable[StatementLine], *, time_zone: str) -> str:
    """Render lines as CSV (RFC 4180, comma, CRLF) with local date/time for the reader.

    Amounts are roubles with a dot and two decimals (``-85.50``) so spreadsheets read them as
    numbers; text cells that look like formulas are neutralised.
    """
    tz = zone(time_zone)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for line in lines:
        local = line.at.astimezone(tz)
        items = "; ".join(f"{i.name} x{i.qty} ({_rub(i.total)})" for i in line.items)
        writer.writerow((
            local.date().isoformat(),
            local.strftime("%H:%M:%S"),
            line.kind.value,
            line.status.value,
            _rub(line.amount),
            _rub(line.total),
            str(line.bonus),
            _text(line.operation_id),
            _text(line.description),
            _text(items),
            " ".join(f"#{t}" for t in line.tags),
        ))
    return out.getvalue()
