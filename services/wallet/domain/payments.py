"""What becomes of a payment an integrator reports: credited, replayed, parked or rejected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.wallet.domain.account import Account
from services.wallet.domain.events import TopUpCredited
from services.wallet.domain.values import RejectionReason, SubBalance, TopUpChannel, WalletRejected

# A payment id used before with another contract or amount, or with other content on this
# account: the payer's provider must reverse the payment.
PAYMENT_ID_CONFLICT = "payment_id_conflict"


class TopUpVerdict(StrEnum):
    CREDITED = "credited"  # the account changed: commit it, send the receipt
    REPLAYED = "replayed"  # credited before: nothing changes, the recorded credit goes again
    PARKED = "parked"  # no account yet: keep the payment until it opens (or parking expires)
    REJECTED = "rejected"  # never to be credited: ``rejection`` says why


@dataclass(frozen=True, slots=True)
class TopUpDecision:
    verdict: TopUpVerdict
    rejection: str = ""
    resend: tuple[TopUpCredited, ...] = ()


def receive_top_up(
    account: Account | None,
    payment_id: str,
    amount: int,
    *,
    payment_id_reused: bool,
    now: datetime,
    sub_balance: SubBalance = SubBalance.GENERAL,
    channel: TopUpChannel = TopUpChannel.BANK_CARD,
    auto_top_up_request_id: str | None = None,
) -> TopUpDecision:
    """Decide a reported payment for ``account`` (None: wallet does not know the contract yet).

    In order: a payment id reused with another contract or amount (``payment_id_reused``,
    known across all accounts) is rejected; a payment for an unknown contract is parked (the
    card's issuance travels on another topic and may be read after the payment); otherwise
    the account credits it (:meth:`Account.top_up`). A payment credited before is replayed
    with its recorded event; one the account refuses is rejected with the refusal's reason
    (a payment id reused with other content on this account reads ``payment_id_conflict``).
    """
    if payment_id_reused:
        return TopUpDecision(TopUpVerdict.REJECTED, PAYMENT_ID_CONFLICT)
    if account is None:
        return TopUpDecision(TopUpVerdict.PARKED)
    try:
        result = account.top_up(payment_id, amount, now=now, sub_balance=sub_balance,
                                channel=channel, auto_top_up_request_id=auto_top_up_request_id)
    except WalletRejected as exc:
        return TopUpDecision(TopUpVerdict.REJECTED,
                             PAYMENT_ID_CONFLICT
                             if exc.reason is RejectionReason.IDEMPOTENCY_CONFLICT
                             else exc.reason.value)
    if result.replayed:
        return TopUpDecision(TopUpVerdict.REPLAYED, resend=(account.recorded_top_up(payment_id),))
    return TopUpDecision(TopUpVerdict.CREDITED)
