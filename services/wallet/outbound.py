"""Domain events -> wire events: one small function per event, the only translation point.

Message ids are derived from the operation (uuid5), so re-emitting the recorded result of a
redelivered payment, sale or ride yields the very same message id and downstream inboxes
drop it. Replayed operations record no domain event; the account rebuilds it from what it
remembers (``Account.recorded_*``) so the same path produces the same bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import integrations as inbound
from contracts import wallet as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from services.wallet import domain as d

NAMESPACE = uuid.UUID("5b0c8f2e-3c1a-4f4e-9a61-7d2b1c0e9a11")

Wired = tuple[str, str, ContractModel, str]
"""(topic, key, message, message id)"""


def message_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([kind, *map(str, parts)])))


def balances(b: d.Balances) -> wire.Balances:
    return wire.Balances(general=b.general, canteen=b.canteen, transit=b.transit,
                         bonus_points=b.bonus)


def sale_item(i: d.SaleItem) -> inbound.SaleItem:
    return inbound.SaleItem(sku=i.sku, name=i.name, category=inbound.FoodCategory(i.category),
                            allergens=list(i.allergens), qty=i.qty, unit_price=i.unit_price)


def domain_items(items: Iterable[inbound.SaleItem]) -> tuple[d.SaleItem, ...]:
    return tuple(d.SaleItem(sku=i.sku, name=i.name, category=i.category.value,
                            allergens=tuple(i.allergens), qty=i.qty, unit_price=i.unit_price)
                 for i in items)


# --- one function per domain event ------------------------------------------------------------

def _account_opened(e: d.AccountOpened) -> ContractModel:
    return wire.AccountOpened(contract=e.contract, school_id=e.school_id, opened_at=e.at)


def _top_up(e: d.TopUpCredited) -> ContractModel:
    return wire.TopUpApplied(contract=e.contract, payment_id=e.payment_id, amount=e.amount,
                             sub_balance=e.sub_balance.value, channel=e.channel.value,
                             balances=balances(e.balances), applied_at=e.at)


def _debt_settled(e: d.GraceDebtSettled) -> ContractModel:
    return wire.DebtSettled(contract=e.contract, payment_id=e.payment_id,
                            correction_id=e.correction_id, fares_collected=list(e.fares),
                            fares_total=e.fares_total, settled_at=e.at)


def _sale_posted(e: d.SaleApproved) -> ContractModel:
    return wire.SalePosted(contract=e.contract, sale_id=e.sale_id, terminal_id=e.terminal_id,
                           items=[sale_item(i) for i in e.items], total=e.total,
                           paid_money=e.paid_money, paid_bonus=e.bonus_used,
                           bonus_accrued=e.bonus_accrued, grace_meal=e.grace_credit > 0,
                           balances=balances(e.balances), sold_at=e.at)


def _sale_declined(e: d.SaleDeclined) -> ContractModel:
    return wire.SaleDeclined(contract=e.contract, sale_id=e.sale_id, terminal_id=e.terminal_id,
                             reason=e.reason.value, detail=e.detail, total=e.total,
                             declined_at=e.at)


def _grace_meal(e: d.GraceMealGranted) -> ContractModel:
    return wire.GraceMealGranted(contract=e.contract, sale_id=e.sale_id, debt=e.debt,
                                 granted_at=e.at)


def _fare_debited(e: d.FareDebited) -> ContractModel:
    return wire.FareDebited(contract=e.contract, ride_id=e.ride_id, amount=e.amount,
                            balances=balances(e.balances), debited_at=e.at)


def _fare_declined(e: d.FareDeclined) -> ContractModel:
    return wire.FareDeclined(contract=e.contract, ride_id=e.ride_id, amount=e.amount,
                             reason=e.reason.value, declined_at=e.at)


def _fare_refunded(e: d.FareRefunded) -> ContractModel:
    return wire.FareRefunded(contract=e.contract, ride_id=e.ride_id,
                             correction_id=e.correction_id, amount=e.amount,
                             balances=balances(e.balances), refunded_at=e.at)


def _sale_line_refunded(e: d.SaleLineRefunded) -> ContractModel:
    return wire.SaleLineRefunded(contract=e.contract, refund_id=e.refund_id, sale_id=e.sale_id,
                                 line=e.line_no, amount=e.amount, money=e.money,
                                 bonus_restored=e.bonus_restored,
                                 bonus_clawed_back=e.bonus_clawed_back, dispute_id=e.dispute_id,
                                 balances=balances(e.balances), refunded_at=e.at)


def _dispute_opened(e: d.DisputeOpened) -> ContractModel:
    return wire.DisputeOpened(contract=e.contract, dispute_id=e.dispute_id,
                              operation_id=e.sale_id or e.ride_id, line=e.line_no,
                              opened_at=e.at)


def _dispute_approved(e: d.DisputeApproved) -> ContractModel:
    return wire.DisputeResolved(contract=e.contract, dispute_id=e.dispute_id, approved=True,
                                refunded=e.refund_amount, resolved_at=e.at)


def _dispute_rejected(e: d.DisputeRejected) -> ContractModel:
    return wire.DisputeResolved(contract=e.contract, dispute_id=e.dispute_id, approved=False,
                                refunded=0, resolved_at=e.at)


def _low_balance(e: d.LowBalanceReached) -> ContractModel:
    return wire.LowBalanceReached(contract=e.contract, sub_balance=e.sub_balance.value,
                                  balance=e.balance,
                                  threshold=e.threshold,
                                  predicted_days_left=e.days_of_lunches_left, reached_at=e.at)


def _auto_top_up(e: d.AutoTopUpRequested) -> ContractModel:
    return wire.AutoTopUpRequested(request_id=e.request_id, contract=e.contract,
                                   amount=e.amount, sub_balance=e.sub_balance.value,
                                   requested_at=e.at, reason=wire.AutoTopUpReason(e.reason),
                                   due_date=e.due_date)


def _auto_top_up_failed(e: d.AutoTopUpFailed) -> ContractModel:
    return wire.AutoTopUpFailed(contract=e.contract, request_id=e.request_id, amount=e.amount,
                                reason=e.reason, failed_at=e.at)


def _auto_top_up_cancelled(e: d.AutoTopUpCancelled) -> ContractModel:
    return wire.AutoTopUpCancelled(request_id=e.request_id, contract=e.contract,
                                   cancelled_at=e.at)


def _card_blocked(e: d.CardBlocked) -> ContractModel:
    return wire.CardBlocked(contract=e.contract, by_account=e.by, reason=e.reason,
                            blocked_at=e.at)


def _card_unblocked(e: d.CardUnblocked) -> ContractModel:
    return wire.CardUnblocked(contract=e.contract, by_account=e.by, unblocked_at=e.at)


def _transit_payments(e: d.TransitPaymentsSwitched) -> ContractModel:
    return wire.TransitPaymentsSwitched(contract=e.contract, enabled=e.enabled,
                                        by_account=e.by, switched_at=e.at)


def _controls_changed(e: d.ControlsChanged) -> ContractModel:
    return wire.ControlsChanged(contract=e.contract, by_account=e.by or "system",
                                changed_at=e.at, what=e.what)


def _money_moved(e: d.MoneyMoved) -> ContractModel:
    return wire.MoneyMoved(contract=e.contract, transfer_id=e.transfer_id,
                           from_sub_balance=e.source.value, to_sub_balance=e.target.value,
                           amount=e.amount, balances=balances(e.balances), moved_at=e.at)


def _bonus_expired(e: d.BonusesExpired) -> ContractModel:
    return wire.BonusExpired(contract=e.contract, points=e.points, expired_at=e.at)


def _reissued(e: d.CardReissued) -> ContractModel:
    return wire.AccountReissued(old_contract=e.old_contract, new_contract=e.new_contract,
                                moved=balances(e.moved), reissued_at=e.at)


OUTBOUND: dict[type[Any], tuple[Callable[[Any], ContractModel], Callable[[Any], str]]] = {
    d.AccountOpened: (_account_opened, lambda e: message_id("opened", e.contract)),
    d.TopUpCredited: (_top_up, lambda e: message_id("topup", e.contract, e.payment_id)),
    d.GraceDebtSettled: (_debt_settled, lambda e: message_id(
        "settled", e.contract, e.payment_id or f"correction:{e.correction_id}")),
    d.SaleApproved: (_sale_posted, lambda e: message_id("sale", e.sale_id)),
    d.SaleDeclined: (_sale_declined, lambda e: message_id("sale", e.sale_id)),
    d.GraceMealGranted: (_grace_meal, lambda e: message_id("grace", e.sale_id)),
    d.FareDebited: (_fare_debited, lambda e: message_id("fare", e.ride_id)),
    d.FareDeclined: (_fare_declined, lambda e: message_id("fare", e.ride_id)),
    d.FareRefunded: (_fare_refunded,
                     lambda e: message_id("fare-refund", e.contract, e.correction_id)),
    d.SaleLineRefunded: (_sale_line_refunded,
                         lambda e: message_id("sale-refund", e.contract, e.refund_id)),
    d.DisputeOpened: (_dispute_opened, lambda e: message_id("dispute", e.contract, e.dispute_id)),
    d.DisputeApproved: (_dispute_approved,
                        lambda e: message_id("resolved", e.contract, e.dispute_id)),
    d.DisputeRejected: (_dispute_rejected,
                        lambda e: message_id("resolved", e.contract, e.dispute_id)),
    d.LowBalanceReached: (_low_balance, lambda e: message_id("low", e.contract, e.at.isoformat())),
    d.AutoTopUpRequested: (_auto_top_up, lambda e: message_id("auto", e.request_id)),
    d.AutoTopUpFailed: (_auto_top_up_failed, lambda e: message_id("auto-failed", e.request_id)),
    d.AutoTopUpCancelled: (_auto_top_up_cancelled,
                           lambda e: message_id("auto-cancel", e.request_id)),
    d.CardBlocked: (_card_blocked, lambda e: message_id("blocked", e.contract, e.at.isoformat())),
    d.CardUnblocked: (_card_unblocked,
                      lambda e: message_id("unblocked", e.contract, e.at.isoformat())),
    d.TransitPaymentsSwitched: (_transit_payments, lambda e: message_id(
        "transit-payments", e.contract, e.enabled, e.at.isoformat())),
    d.ControlsChanged: (_controls_changed,
                        lambda e: message_id("controls", e.contract, e.what, e.at.isoformat())),
    d.MoneyMoved: (_money_moved, lambda e: message_id("moved", e.contract, e.transfer_id)),
    d.BonusesExpired: (_bonus_expired,
                       lambda e: message_id("expired", e.contract, *sorted(e.lot_ids))),
    d.CardReissued: (_reissued, lambda e: message_id("reissued", e.old_contract, e.reissue_id)),
}


def _key(event: Any) -> str:
    return event.old_contract if isinstance(event, d.CardReissued) else event.contract  # type: ignore[no-any-return]


def to_wire(event: Any) -> Wired | None:
    """(topic, key, message, message id) for a domain event; None for internal-only events."""
    mapping = OUTBOUND.get(type(event))
    if mapping is None:
        return None
    convert, mid = mapping
    message = convert(event)
    return topic_for(type(message)).name, _key(event), message, mid(event)


def sale_decision(sale: inbound.CanteenSaleRequested, result: d.SaleResult | None,
                  at: datetime) -> Wired:
    """The till's answer (keyed by terminal); ``result`` None: the card is unknown."""
    if result is None:
        decision = wire.SaleDecision(sale_id=sale.sale_id, terminal_id=sale.terminal_id,
                                     approved=False, reason=wire.DeclineReason.UNKNOWN_CARD,
                                     decided_at=at)
    else:
        decision = wire.SaleDecision(
            sale_id=sale.sale_id, terminal_id=sale.terminal_id, approved=result.approved,
            reason=result.reason.value if result.reason else None, detail=result.detail,
            paid_money=result.paid_money, paid_bonus=result.bonus_used,
            balance_after=result.balances.meal_funds, decided_at=at)
    return (topic_for(wire.SaleDecision).name, sale.terminal_id, decision,
            message_id("decision", sale.sale_id))


def unknown_card_sale(sale: inbound.CanteenSaleRequested, at: datetime) -> Wired:
    total = sum(i.qty * i.unit_price for i in sale.items)
    declined = wire.SaleDeclined(contract=None, sale_id=sale.sale_id, terminal_id=sale.terminal_id,
                                 reason=wire.DeclineReason.UNKNOWN_CARD, detail=sale.card_uid,
                                 total=total, declined_at=at)
    return (topic_for(wire.SaleDeclined).name, sale.card_uid, declined,
            message_id("sale", sale.sale_id))


def unknown_card_fare(fare: Any, at: datetime) -> Wired:
    declined = wire.FareDeclined(contract=fare.contract, ride_id=fare.ride_id, amount=fare.amount,
                                 reason=wire.DeclineReason.UNKNOWN_CARD, declined_at=at)
    return (topic_for(wire.FareDeclined).name, fare.contract, declined,
            message_id("fare", fare.ride_id))


def receipt(top_up: inbound.TopUpReceived, email: str, at: datetime) -> Wired:
    message = wire.ReceiptIssued(contract=top_up.contract, payment_id=top_up.payment_id,
                                 amount=top_up.amount, email=email, issued_at=at)
    return (topic_for(wire.ReceiptIssued).name, top_up.contract, message,
            message_id("receipt", top_up.payment_id))


def sales_report(query: wire.GetSalesReport, r: d.SalesReport) -> wire.SalesReportReply:
    return wire.SalesReportReply(
        school_id=query.school_id, date=query.date, approved_sales=r.approved_sales,
        approved_amount=r.approved_amount, paid_money=r.paid_money, paid_bonus=r.paid_bonus,
        declined_sales=r.declined_sales, declined_amount=r.declined_amount, refunds=r.refunds,
        refunded_amount=r.refunded_amount, refunded_money=r.refunded_money,
        lines=[wire.SalesReportLine(terminal_id=x.terminal_id, category=x.category,
                                    sales=x.sales, quantity=x.quantity, amount=x.amount)
               for x in r.lines],
        declines=[wire.SalesReportDecline(reason=x.reason.value, sales=x.sales, amount=x.amount)
                  for x in r.declines],
        refund_lines=[wire.SalesReportRefund(terminal_id=x.terminal_id, category=x.category,
                                             refunds=x.refunds, amount=x.amount, money=x.money)
                      for x in r.refund_lines])


# --- statement ---------------------------------------------------------------------------------

KINDS: dict[str, tuple[d.StatementKind, ...]] = {
    "topup": (d.StatementKind.TOP_UP,),
    "sale": (d.StatementKind.PURCHASE,),
    "fare": (d.StatementKind.FARE,),
    "refund": (d.StatementKind.REFUND, d.StatementKind.FARE_REFUND),
    "transfer": (d.StatementKind.TRANSFER,),
    "bonus": (d.StatementKind.BONUS_EXPIRY,),
    "reissue": (d.StatementKind.REISSUE,),
    "payout": (d.StatementKind.PAYOUT,),
}
WIRE_KIND = {k: name for name, kinds in KINDS.items() for k in kinds}
STATUSES: dict[str, tuple[d.LineStatus, ...]] = {
    "posted": (d.LineStatus.COMPLETED, d.LineStatus.PARTIALLY_REFUNDED, d.LineStatus.REFUNDED),
    "declined": (d.LineStatus.DECLINED,),
    "disputed": (d.LineStatus.DISPUTED,),
    "partially_refunded": (d.LineStatus.PARTIALLY_REFUNDED,),
    "refunded": (d.LineStatus.REFUNDED,),
}
WIRE_STATUS = {d.LineStatus.COMPLETED: "posted"}


def statement_bounds(date_from: str | None, date_to: str | None,
                     time_zone: str) -> tuple[datetime | None, datetime | None]:
    """School-local days -> [start, end) instants: local midnight of the first day to local
    midnight after the last."""
    tz = ZoneInfo(time_zone)

    def midnight(day: str, plus: int = 0) -> datetime:
        return datetime.fromisoformat(day).replace(tzinfo=tz) + timedelta(days=plus)

    return (midnight(date_from) if date_from else None,
            midnight(date_to, 1) if date_to else None)


def statement_line(line: d.StatementLine) -> wire.StatementLine:
    return wire.StatementLine(at=line.at, kind=WIRE_KIND[line.kind], operation_id=line.operation_id,
                              amount=line.amount, status=WIRE_STATUS.get(line.status,
                                                                          line.status.value),
                              description=line.description,
                              items=[sale_item(i) for i in line.items], tags=list(line.tags))


def top_up_template(t: d.TopUpTemplate) -> wire.TopUpTemplate:
    return wire.TopUpTemplate(template_id=t.template_id, name=t.name, amount=t.amount,
                              sub_balance=t.sub_balance.value, updated_at=t.updated_at)


def payment_settings(account: d.Account) -> wire.PaymentSettingsReply:
    plan = account.scheduled_top_up
    due = plan.next_due() if plan is not None else None
    return wire.PaymentSettingsReply(
        contract=account.contract, transit_payments=account.transit_payments,
        scheduled_top_up=None if plan is None else wire.ScheduledTopUp(
            days_of_month=list(plan.days), amount=plan.amount,
            sub_balance=plan.sub_balance.value, paused=plan.paused,
            next_due_date=due.isoformat() if due is not None else None))


def application(a: d.Application) -> wire.Application:
    return wire.Application(
        application_id=a.application_id, contract=a.contract, kind=a.kind.value,
        reason=a.reason.value, status=a.status.value, comment=a.comment,
        staff_comment=a.staff_comment, refunded=a.refunded, submitted_at=a.submitted_at,
        updated_at=a.updated_at)


def application_changed(e: d.ApplicationChanged) -> Wired:
    """Keyed by contract on wallet.events.v1; one message id per application and status."""
    message = wire.ApplicationStatusChanged(
        application_id=e.application_id, contract=e.contract, kind=e.kind.value,
        status=e.status.value, comment=e.comment, refunded=e.refunded, changed_at=e.at)
    return ("wallet.events.v1", e.contract, message,
            message_id("application", e.application_id, e.status.value, e.refunded))
