"""Wire events -> notify's domain facts: one small function per contract, the only place that
knows both. Event ids are business keys (tap, sale, payment, ride, session ids), not envelope
ids, so the same fact published again under a new message id still maps onto the same
messages (and the store's unique dedupe key makes the copy a no-op)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from contracts import access, auth, transit, wallet
from contracts import notify as wire
from services.notify import domain as d


def _ms(at: datetime) -> datetime:
    """MongoDB keeps milliseconds: trim so a stored timeline entry equals its redelivery."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _stamp(at: datetime) -> str:
    return str(int(at.timestamp()))


# -- access ---------------------------------------------------------------------------------

def entered(e: access.StudentEntered) -> tuple[d.NotificationEvent, d.TimelineEntry]:
    event_id = f"access:in:{e.tap_id}"
    return (d.NotificationEvent(event_id, d.NotificationKind.CHILD_ENTERED, e.at,
                                d.GateFacts(e.at, e.school_id), contract=e.contract),
            d.TimelineEntry(event_id, d.TimelineKind.ENTRY, _ms(e.at), e.school_id))


def left(e: access.StudentLeft) -> tuple[d.NotificationEvent, d.TimelineEntry]:
    event_id = f"access:out:{e.tap_id}"
    return (d.NotificationEvent(event_id, d.NotificationKind.CHILD_LEFT, e.at,
                                d.GateFacts(e.at, e.school_id), contract=e.contract),
            d.TimelineEntry(event_id, d.TimelineKind.EXIT, _ms(e.at), e.school_id))


def manual_entry(e: access.ManualEntryRecorded) -> tuple[d.NotificationEvent, d.TimelineEntry]:
    event_id = f"access:manual:{e.entry_id}"
    return (d.NotificationEvent(event_id, d.NotificationKind.MANUAL_ENTRY, e.at,
                                d.ManualEntryFacts(e.at, e.school_id, True, e.reason),
                                contract=e.contract),
            d.TimelineEntry(event_id, d.TimelineKind.ENTRY, _ms(e.at), e.school_id,
                            detail=e.reason))


def late(e: access.LateArrivalDetected) -> d.NotificationEvent:
    # The lesson start as an instant, without needing the school's time zone.
    lesson_start = e.arrived_at - timedelta(minutes=e.minutes_late)
    return d.NotificationEvent(f"access:late:{e.contract}:{e.local_date}", d.NotificationKind.LATE,
                               e.arrived_at, d.LateFacts(e.arrived_at, lesson_start, e.school_id),
                               contract=e.contract)


def absent(e: access.AbsenceDetected, now: datetime) -> d.NotificationEvent:
    return d.NotificationEvent(f"access:absent:{e.contract}:{e.local_date}",
                               d.NotificationKind.ABSENT, now,
                               d.AbsentFacts(date.fromisoformat(e.local_date), e.school_id),
                               contract=e.contract)


# -- wallet ---------------------------------------------------------------------------------

_DECLINE = {r.value: r for r in d.DeclineReason}


def _decline(reason: wallet.DeclineReason) -> d.DeclineReason:
    return _DECLINE.get(reason.value, d.DeclineReason.OTHER)


def sale_posted(e: wallet.SalePosted) -> tuple[d.NotificationEvent, d.TimelineEntry]:
    event_id = f"wallet:sale:{e.sale_id}"
    lines = tuple(d.PurchaseLine(i.name, i.qty, i.unit_price) for i in e.items)
    facts = d.CanteenPurchaseFacts(e.sold_at, lines, total=e.paid_money,
                                   balance_after=e.balances.canteen + e.balances.general,
                                   place=e.terminal_id)
    return (d.NotificationEvent(event_id, d.NotificationKind.CANTEEN_PURCHASE, e.sold_at, facts,
                                contract=e.contract),
            d.TimelineEntry(event_id, d.TimelineKind.PURCHASE, _ms(e.sold_at), e.terminal_id,
                            e.paid_money, ", ".join(i.name for i in e.items)))


def sale_declined(e: wallet.SaleDeclined) -> d.NotificationEvent | None:
    if e.contract is None:
        return None  # unknown card: nobody to tell
    return d.NotificationEvent(
        f"wallet:sale-declined:{e.sale_id}", d.NotificationKind.PAYMENT_DECLINED, e.declined_at,
        d.PaymentDeclinedFacts(e.declined_at, e.total, _decline(e.reason), e.terminal_id,
                               e.detail or None),
        contract=e.contract)


def fare_declined(e: wallet.FareDeclined) -> d.NotificationEvent:
    return d.NotificationEvent(
        f"wallet:fare-declined:{e.ride_id}", d.NotificationKind.PAYMENT_DECLINED, e.declined_at,
        d.PaymentDeclinedFacts(e.declined_at, e.amount, _decline(e.reason)),
        contract=e.contract)


def _top_up_id(payment_id: str) -> str:
    return f"wallet:topup:{payment_id}"


def top_up(e: wallet.TopUpApplied) -> d.NotificationEvent:
    balance = getattr(e.balances, e.sub_balance.value)
    facts = d.TopUpFacts(e.applied_at, e.amount, balance, e.payment_id, None,
                         e.sub_balance.value)
    return d.NotificationEvent(_top_up_id(e.payment_id), d.NotificationKind.TOP_UP,
                               e.applied_at, facts, contract=e.contract)


def receipt(e: wallet.ReceiptIssued) -> d.NotificationEvent:
    """Same event id as the top-up itself, so the receipt and the top-up's e-mail companion
    are one message for a guardian whose address it is."""
    facts = d.TopUpFacts(e.issued_at, e.amount, None, e.payment_id)
    return d.NotificationEvent(_top_up_id(e.payment_id), d.NotificationKind.TOP_UP,
                               e.issued_at, facts, contract=e.contract)


def low_balance(e: wallet.LowBalanceReached) -> d.NotificationEvent:
    return d.NotificationEvent(
        f"wallet:low:{e.contract}:{e.sub_balance.value}:{_stamp(e.reached_at)}",
        d.NotificationKind.LOW_BALANCE, e.reached_at,
        d.LowBalanceFacts(e.balance, e.predicted_days_left, e.threshold), contract=e.contract)


def card_blocked(e: wallet.CardBlocked) -> d.NotificationEvent:
    return d.NotificationEvent(f"wallet:blocked:{e.contract}:{_stamp(e.blocked_at)}",
                               d.NotificationKind.CARD_BLOCKED, e.blocked_at,
                               d.CardBlockedFacts(e.blocked_at, e.reason), contract=e.contract)


def grace_meal(e: wallet.GraceMealGranted) -> d.NotificationEvent:
    return d.NotificationEvent(f"wallet:grace:{e.sale_id}", d.NotificationKind.GRACE_MEAL,
                               e.granted_at, d.GraceMealFacts(e.granted_at, e.debt),
                               contract=e.contract)


def dispute_opened(e: wallet.DisputeOpened) -> d.NotificationEvent:
    return d.NotificationEvent(f"wallet:dispute-opened:{e.dispute_id}",
                               d.NotificationKind.DISPUTE_OPENED, e.opened_at,
                               d.DisputeOpenedFacts(e.opened_at, e.operation_id, e.line),
                               contract=e.contract)


def dispute_resolved(e: wallet.DisputeResolved) -> d.NotificationEvent:
    return d.NotificationEvent(f"wallet:dispute-resolved:{e.dispute_id}",
                               d.NotificationKind.DISPUTE_RESOLVED, e.resolved_at,
                               d.DisputeResolvedFacts(e.resolved_at, e.approved, e.refunded),
                               contract=e.contract)


def sale_line_refunded(e: wallet.SaleLineRefunded) -> d.NotificationEvent:
    facts = d.RefundFacts(e.refunded_at, e.money, d.RefundOf.SALE_LINE,
                          e.balances.canteen + e.balances.general, e.dispute_id is not None)
    return d.NotificationEvent(f"wallet:line-refund:{e.sale_id}:{e.line}:{e.refund_id}",
                               d.NotificationKind.REFUND, e.refunded_at, facts,
                               contract=e.contract)


def fare_refunded(e: wallet.FareRefunded) -> d.NotificationEvent:
    facts = d.RefundFacts(e.refunded_at, e.amount, d.RefundOf.RIDE,
                          e.balances.transit + e.balances.general)  # what fares are paid from
    return d.NotificationEvent(f"wallet:fare-refund:{e.correction_id}",
                               d.NotificationKind.REFUND, e.refunded_at, facts,
                               contract=e.contract)


def debt_settled(e: wallet.DebtSettled) -> d.NotificationEvent:
    facts = d.DebtSettledFacts(e.settled_at, len(e.fares_collected), e.fares_total)
    return d.NotificationEvent(
        f"wallet:debt-settled:{e.contract}:{e.payment_id or _stamp(e.settled_at)}",
        d.NotificationKind.DEBT_SETTLED, e.settled_at, facts, contract=e.contract)


_TOP_UP_REJECTION = {r.value: r for r in d.TopUpRejection}


def top_up_rejected(e: wallet.TopUpRejected, at: datetime) -> d.NotificationEvent | None:
    """``at`` is the envelope time (the event has none). None when nobody is to be told."""
    reason = _TOP_UP_REJECTION.get(e.reason, d.TopUpRejection.OTHER)
    if not d.rejection_reaches_guardians(reason):
        return None
    return d.NotificationEvent(
        f"wallet:topup-rejected:{e.contract}:{e.payment_id}:{e.amount}",
        d.NotificationKind.TOP_UP_REJECTED, at,
        d.TopUpRejectedFacts(at, e.amount, reason, e.payment_id), contract=e.contract)


def auto_top_up_failed(e: wallet.AutoTopUpFailed) -> d.NotificationEvent:
    return d.NotificationEvent(f"wallet:auto-topup-failed:{e.request_id}",
                               d.NotificationKind.AUTO_TOP_UP_FAILED, e.failed_at,
                               d.AutoTopUpFailedFacts(e.failed_at, e.amount, e.reason),
                               contract=e.contract)


_APPLICATION_OF = {k.value: k for k in d.ApplicationOf}
_APPLICATION_OUTCOME = {o.value: o for o in d.ApplicationOutcome}


def application_status_changed(e: wallet.ApplicationStatusChanged) -> d.NotificationEvent | None:
    """None for a submission (the guardian who submitted it knows): the guardians hear when
    the school accepts, refuses or finishes it. One message per application and status."""
    outcome = _APPLICATION_OUTCOME.get(e.status.value)
    if outcome is None:
        return None
    facts = d.ApplicationFacts(e.changed_at, _APPLICATION_OF[e.kind.value], outcome,
                               e.comment or None, e.refunded)
    return d.NotificationEvent(
        f"wallet:application:{e.contract}:{e.application_id}:{outcome.value}",
        d.NotificationKind.APPLICATION_STATUS, e.changed_at, facts, contract=e.contract)


# -- transit --------------------------------------------------------------------------------

def concession_expiring(e: transit.ConcessionExpiring, at: datetime) -> d.NotificationEvent:
    """One reminder per contract and expiry date, whichever card or operator raised it
    (``at``: the envelope time)."""
    return d.NotificationEvent(
        f"transit:concession:{e.contract}:{e.valid_until}", d.NotificationKind.CONCESSION_EXPIRING,
        at, d.ConcessionExpiringFacts(date.fromisoformat(e.valid_until), e.days_left),
        contract=e.contract)


_FARE = {
    transit.FareExplanation.FULL_FARE: d.FareExplanation.FULL_FARE,
    transit.FareExplanation.CONCESSION: d.FareExplanation.CONCESSION,
    transit.FareExplanation.TRANSFER_FREE: d.FareExplanation.TRANSFER_FREE,
    transit.FareExplanation.CAPPED: d.FareExplanation.CAPPED,
    transit.FareExplanation.PARTIALLY_CAPPED: d.FareExplanation.CAPPED,
    transit.FareExplanation.CORRECTED_LATE_UPLOAD: d.FareExplanation.CORRECTED,
}


def ride(e: transit.RideRecorded) -> tuple[d.NotificationEvent, d.TimelineEntry]:
    event_id = f"transit:ride:{e.ride_id}"
    facts = d.RideFacts(e.tapped_at, e.fare, _FARE[e.explanation], e.route, e.stop_id)
    return (d.NotificationEvent(event_id, d.NotificationKind.RIDE, e.tapped_at, facts,
                                contract=e.contract),
            d.TimelineEntry(event_id, d.TimelineKind.RIDE, _ms(e.tapped_at), e.route, e.fare,
                            e.explanation.value))


# -- auth -----------------------------------------------------------------------------------

def login(e: auth.LoginSucceeded) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:login:{e.session_id}", d.NotificationKind.NEW_LOGIN, e.at,
                               d.NewLoginFacts(e.at, e.device or None), account_id=e.account_id)


def account_locked(e: auth.AccountLocked) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:locked:{e.account_id}:{_stamp(e.at)}",
                               d.NotificationKind.ACCOUNT_LOCKED, e.at,
                               d.AccountLockedFacts(e.at, e.until), account_id=e.account_id)


def account_unlocked(e: auth.AccountUnlocked) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:unlocked:{e.account_id}:{_stamp(e.at)}",
                               d.NotificationKind.ACCOUNT_UNLOCKED, e.at,
                               d.AccountUnlockedFacts(e.at), account_id=e.account_id)


def password_changed(e: auth.PasswordChanged) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:password:{e.account_id}:{_stamp(e.at)}",
                               d.NotificationKind.PASSWORD_CHANGED, e.at,
                               d.PasswordChangedFacts(e.at), account_id=e.account_id)


def second_factor_disabled(e: auth.SecondFactorDisabled) -> d.NotificationEvent:
    origin = "support" if e.by_support else "owner"
    return d.NotificationEvent(f"auth:second-factor-off:{e.account_id}:{_stamp(e.at)}:{origin}",
                               d.NotificationKind.SECOND_FACTOR_DISABLED, e.at,
                               d.SecondFactorDisabledFacts(e.at, e.by_support),
                               account_id=e.account_id)


def registration_attempted(e: auth.RegistrationAttemptedForExistingAccount
                           ) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:registration-attempt:{e.account_id}:{_stamp(e.at)}",
                               d.NotificationKind.REGISTRATION_ATTEMPT, e.at,
                               d.RegistrationAttemptFacts(e.at), account_id=e.account_id)


def refresh_token_reused(e: auth.RefreshTokenReused) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:refresh-reused:{e.session_id}",
                               d.NotificationKind.SESSION_REVOKED, e.at,
                               d.SessionRevokedFacts(e.at), account_id=e.account_id)


def session_end(e: auth.SessionEnded) -> d.SessionEnd:
    return d.SessionEnd(e.account_id, e.session_id, e.kept_session_id, e.at)


def child_link_refused(e: auth.ChildLinkRefused) -> d.NotificationEvent:
    return d.NotificationEvent(f"auth:link-refused:{e.contract}:{_stamp(e.at)}",
                               d.NotificationKind.CHILD_LINK_REFUSED, e.at,
                               d.ChildLinkRefusedFacts(e.at, e.failures_in_window),
                               contract=e.contract, account_id=e.account_id)


def guardian_invited(e: auth.GuardianInvited) -> d.NotificationEvent:
    """To the invitee's account (not a guardian of the child yet), naming the child's
    contract."""
    return d.NotificationEvent(f"auth:invited:{e.contract}:{e.invitation_id}",
                               d.NotificationKind.GUARDIAN_INVITED, e.at,
                               d.GuardianInvitedFacts(e.at, d.GuardianRole(e.role.value),
                                                      e.expires_at),
                               contract=e.contract, account_id=e.account_id)


_PURPOSE = {p.value: p for p in d.CodePurpose}


def code_request(e: wire.OneTimeCodeRequested, now: datetime) -> d.OneTimeCodeRequest:
    """Raises KeyError for an unknown purpose (the handler dead-letters it)."""
    ttl = max(1, round((e.expires_at - now).total_seconds() / 60))
    return d.OneTimeCodeRequest(e.request_id, e.phone, e.code.get_secret_value(),
                                _PURPOSE[e.purpose], now, ttl_minutes=ttl, locale=e.locale.value,
                                email=e.email)
