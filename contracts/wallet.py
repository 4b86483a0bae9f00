"""Contracts owned by wallet: account events, sale decisions, auto top-up requests, parent
controls, disputes, queries and their replies.

All account events go to ``wallet.events.v1`` keyed by contract, so a reader sees one account's
history in order. Commands and queries from apps go to ``wallet.commands.v1`` with an
``authorization`` header (access token issued by auth) and a ``ce_replyto`` header.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.integrations import CredentialKind, FoodCategory, SaleItem, TopUpChannel
from contracts.money import Kopecks, PositiveKopecks, SignedKopecks
from contracts.types import (
    REPORT_TEXT_MAX,
    CardUid,
    ContractNumber,
    Email,
    Identifier,
    LocalDate,
    SchoolId,
    SubBalance,
    TimeZoneName,
    UtcDatetime,
)


class DeclineReason(StrEnum):
    """Why wallet declined a sale or a fare debit (machine-readable, stable)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    DAILY_LIMIT = "daily_limit"
    BLOCKED_CATEGORY = "blocked_category"
    BLOCKED_ITEM = "blocked_item"
    ALLERGEN = "allergen"
    CARD_BLOCKED = "card_blocked"
    UNKNOWN_CARD = "unknown_card"
    ACCOUNT_CLOSED = "account_closed"
    TRANSIT_PAYMENTS_OFF = "transit_payments_off"


class Balances(Part):
    general: SignedKopecks = Field(description="General balance («Финансы»), kopecks.")
    canteen: SignedKopecks = Field(description="Canteen balance («Электронная столовая»); "
                                   "negative only within the school's grace-meal bound.")
    transit: SignedKopecks = Field(description="Transit balance, kopecks.")
    bonus_points: Kopecks = Field(description="Unexpired bonus points (1 point = 1 kopeck).")


_BALANCES_EXAMPLE = {"general": 0, "canteen": 12_550, "transit": 3_000, "bonus_points": 120}


# --- events on wallet.events.v1 ---------------------------------------------------------------

class AccountOpened(Event):
    contract: ContractNumber
    school_id: SchoolId
    opened_at: UtcDatetime
    time_zone: TimeZoneName | None = Field(default=None, description="The school's IANA time "
                                           "zone (from the card's issue): the child's "
                                           "\"today\" for every service; None from wallets "
                                           "before it was sent.", examples=["Europe/Samara"])


class TopUpApplied(Event):
    """A top-up was credited. Re-emitted unchanged when the same payment id is redelivered."""

    contract: ContractNumber
    payment_id: Identifier
    amount: PositiveKopecks
    sub_balance: SubBalance
    channel: TopUpChannel = Field(description="How the money was paid, copied from the "
                                  "integrator's TopUpReceived.", examples=["bank_card"])
    balances: Balances = Field(description="All balances after the credit.",
                               examples=[_BALANCES_EXAMPLE])
    applied_at: UtcDatetime


class TopUpRejected(Event):
    """A top-up could not be applied (unknown contract, closed account, payment id reused with
    other content, or a balance that would pass 100 million roubles). The money stays with the
    integrator, who must reverse it."""

    contract: ContractNumber
    payment_id: Identifier
    amount: PositiveKopecks
    reason: str = Field(max_length=64,
                        description="unknown_contract | account_closed | payment_id_conflict | "
                        "balance_limit",
                        examples=["payment_id_conflict"])


class ReceiptIssued(Event):
    """An e-mail receipt for a top-up; the only wallet event carrying an e-mail address, read
    by notify."""

    contract: ContractNumber
    payment_id: Identifier
    amount: PositiveKopecks
    email: Email
    issued_at: UtcDatetime


class SalePosted(Event):
    """An approved canteen sale, with its items for the parents' statement."""

    contract: ContractNumber
    sale_id: Identifier
    terminal_id: Identifier
    items: list[SaleItem]
    total: PositiveKopecks = Field(description="Sum of qty * unit price.")
    paid_money: Kopecks = Field(description="Part paid from balances.")
    paid_bonus: Kopecks = Field(description="Part paid with bonus points (never for a category "
                                "excluded from bonuses, WALLET_BONUS_EXCLUDED_CATEGORIES).")
    bonus_accrued: Kopecks = Field(description="Points accrued: 1 % of the money paid for "
                                   "lines whose category is not excluded from bonuses.")
    grace_meal: bool = Field(default=False, description="Paid on credit under the grace rule.")
    balances: Balances = Field(description="All balances after the sale.",
                               examples=[_BALANCES_EXAMPLE])
    sold_at: UtcDatetime


class SaleDeclined(Event):
    contract: ContractNumber | None = Field(description="None when the card is unknown.")
    sale_id: Identifier
    terminal_id: Identifier
    reason: DeclineReason
    detail: str = Field(default="", max_length=200, description="E.g. the blocked category "
                        "or allergen, the blocked SKU, the block reason.",
                        examples=["sweets"])
    total: PositiveKopecks
    declined_at: UtcDatetime


class FareDebited(Event):
    contract: ContractNumber
    ride_id: Identifier
    amount: Kopecks
    balances: Balances = Field(description="All balances after the debit.",
                               examples=[_BALANCES_EXAMPLE])
    debited_at: UtcDatetime


class FareDeclined(Event):
    """The card could not pay a fare; transit puts it on the deny list."""

    contract: ContractNumber
    ride_id: Identifier
    amount: PositiveKopecks
    reason: DeclineReason
    declined_at: UtcDatetime


class FareRefunded(Event):
    contract: ContractNumber
    ride_id: Identifier
    correction_id: Identifier
    amount: PositiveKopecks
    balances: Balances = Field(description="All balances after the refund.",
                               examples=[_BALANCES_EXAMPLE])
    refunded_at: UtcDatetime


class DebtSettled(Event):
    """A top-up covered what the card owed (grace meal and fares declined for lack of money:
    those are charged now, never written off), or a fare correction lowered the last owed fare
    to nothing; transit lifts the deny-list entry. Sent only when nothing is owed any more; a
    top-up of the canteen balance does not pay fares."""

    contract: ContractNumber
    payment_id: Identifier | None = Field(default=None, description="The top-up that settled "
                                          "it (None when a fare correction did).",
                                          examples=["sbp-7f3a9c2e1b4d"])
    correction_id: Identifier | None = Field(
        default=None, description="The transit fare correction that cancelled the last owed "
        "fare, when no payment settled it.", examples=[None])
    fares_collected: list[Identifier] = Field(
        default_factory=list, description="Ride ids of the declined fares this top-up paid.",
        examples=[["val-881-000123"]])
    fares_total: Kopecks = Field(default=0, description="Their sum, kopecks.", examples=[3_500])
    settled_at: UtcDatetime


class LowBalanceReached(Event):
    """Emitted once per downward crossing of the parent's threshold on canteen + general (what
    a meal can draw on); re-armed by whatever lifts that sum back to the threshold: a top-up, a
    sale or fare refund, a money move, an approved dispute."""

    contract: ContractNumber
    sub_balance: SubBalance = Field(
        description="The pocket whose draw took canteen + general below the threshold: a meal "
        "draws canteen, then general, then (a grace meal) canteen again; a fare lowers the sum "
        "only through general; a move through its source. Never transit: the threshold is not "
        "measured on it.", examples=["canteen"])
    balance: SignedKopecks = Field(description="Canteen + general after the debit, kopecks.",
                                   examples=[14_000])
    threshold: Kopecks
    predicted_days_left: int | None = Field(
        description="About how many days of lunches are left at the child's own recent "
        "spending rate; None without history.", examples=[3])
    reached_at: UtcDatetime


class AutoTopUpReason(StrEnum):
    """Why a planned payment is asked: the balance fell below the auto top-up threshold, or a
    due date of the autopay by date came."""

    THRESHOLD = "threshold"
    SCHEDULE = "schedule"


class AutoTopUpRequested(Event):
    """A planned payment: wallet asks the payment integrator for a top-up of a set amount.
    One request per crossing of the threshold, or per child and due date of the autopay by
    date (request id ``sched-<contract>-<due date>``); answered by a TopUpReceived naming the
    request id, or an AutoTopUpCollectionFailed."""

    request_id: Identifier
    contract: ContractNumber
    amount: PositiveKopecks
    sub_balance: SubBalance
    requested_at: UtcDatetime
    reason: AutoTopUpReason = Field(default=AutoTopUpReason.THRESHOLD, description="threshold: "
                                    "the balance fell below the auto top-up threshold; "
                                    "schedule: a due date of the autopay by date.",
                                    examples=["schedule"])
    due_date: LocalDate | None = Field(default=None, description="The school-local due date "
                                       "of a scheduled request; None for the threshold.",
                                       examples=["2026-10-15"])


class CardBlocked(Event):
    contract: ContractNumber
    card_uid: CardUid | None = Field(
        default=None, description="One credential of the contract (the plastic card or a "
        "virtual one) blocked on its own; None: the whole card account (every credential, "
        "and sales and fares from the balance).")
    by_account: Identifier | None = Field(description="Who blocked it (None: system).")
    reason: str = Field(default="lost", max_length=64, examples=["lost"],
                        description="Why the card was blocked, as a short code (e.g. lost).")
    blocked_at: UtcDatetime


class CardUnblocked(Event):
    contract: ContractNumber
    card_uid: CardUid | None = Field(
        default=None, description="One credential of the contract (the plastic card or a "
        "virtual one) unblocked on its own; None: the whole card account (every credential, "
        "and sales and fares from the balance).")
    by_account: Identifier | None = Field(description="Who unblocked it (None: system).",
                                          examples=["acc_7f3a9c2e1b4d"])
    unblocked_at: UtcDatetime


class ControlsChanged(Event):
    """Parent controls changed (limits, blocked categories/items, allergens, thresholds)."""

    contract: ContractNumber
    by_account: Identifier
    changed_at: UtcDatetime
    what: str | None = Field(default=None, max_length=64, description="Which control changed: "
                             "daily_limits, blocked_categories, blocked_items, allergens, "
                             "low_balance_threshold, auto_top_up or grace_meal_limit.",
                             examples=["daily_limits"])


class MoneyMoved(Event):
    contract: ContractNumber
    transfer_id: Identifier
    from_sub_balance: SubBalance
    to_sub_balance: SubBalance
    amount: PositiveKopecks
    balances: Balances = Field(description="All balances after the transfer.",
                               examples=[_BALANCES_EXAMPLE])
    moved_at: UtcDatetime


class DisputeOpened(Event):
    contract: ContractNumber
    dispute_id: Identifier
    operation_id: Identifier = Field(description="Sale id or ride id disputed.")
    line: int | None = Field(default=None, description="Sale line index (0-based).")
    opened_at: UtcDatetime


class DisputeResolved(Event):
    contract: ContractNumber
    dispute_id: Identifier
    approved: bool = Field(description="True when staff approved the dispute; false when "
                           "they rejected it (nothing refunded).", examples=[True])
    refunded: Kopecks
    resolved_at: UtcDatetime


class GraceMealGranted(Event):
    """A meal was given on credit under the school's grace rule: the parent is told at once;
    the next top-up settles the debt (DebtSettled)."""

    contract: ContractNumber
    sale_id: Identifier = Field(description="The sale paid on credit.",
                                examples=["till-7-000981"])
    debt: Kopecks = Field(description="What the child owes now, kopecks (minus the canteen "
                          "balance).", examples=[8_500])
    granted_at: UtcDatetime


class SaleLineRefunded(Event):
    """Money (and points) given back for one sale line, e.g. after an approved dispute."""

    contract: ContractNumber
    refund_id: Identifier = Field(description="Idempotency key of the refund "
                                  "(``dispute:<dispute id>`` for a dispute, "
                                  "``staff:<request id>`` for a RefundSaleLine).",
                                  examples=["dispute:req-000451"])
    sale_id: Identifier = Field(description="The sale refunded.", examples=["till-7-000981"])
    line: int = Field(ge=0, description="Sale line index (0-based).", examples=[0])
    amount: PositiveKopecks = Field(description="Face value refunded on the line, kopecks.",
                                    examples=[4_500])
    money: Kopecks = Field(description="Part credited back to the balances, kopecks.",
                           examples=[4_500])
    bonus_restored: Kopecks = Field(description="Redeemed points given back.", examples=[0])
    bonus_clawed_back: Kopecks = Field(description="Accrued points taken back with the money.",
                                       examples=[45])
    dispute_id: Identifier | None = Field(default=None, description="The dispute approved, "
                                          "if the refund came from one.",
                                          examples=["req-000451"])
    balances: Balances = Field(description="All balances after the refund.",
                               examples=[_BALANCES_EXAMPLE])
    refunded_at: UtcDatetime


class AutoTopUpCancelled(Event):
    """A pending planned payment is withdrawn (the card was reissued under a new contract, or
    the account was closed by a refund on leaving the school): the integrator must not collect
    it."""

    request_id: Identifier = Field(description="The AutoTopUpRequested withdrawn.",
                                   examples=["auto-40012345-3"])
    contract: ContractNumber
    cancelled_at: UtcDatetime


class AutoTopUpFailed(Event):
    """A planned payment could not be collected (the integrator's
    ``AutoTopUpCollectionFailed``): the parent is told, and the next crossing of the threshold
    asks again."""

    contract: ContractNumber
    request_id: Identifier = Field(description="The AutoTopUpRequested that failed.",
                                   examples=["auto-40012345-3"])
    amount: PositiveKopecks = Field(description="The amount that was asked, kopecks.",
                                    examples=[50_000])
    reason: str = Field(max_length=64, description="The integrator's reason code.",
                        examples=["card_declined"])
    failed_at: UtcDatetime


class BonusExpired(Event):
    contract: ContractNumber
    points: PositiveKopecks
    expired_at: UtcDatetime


class AccountReissued(Event):
    """The old contract's balances moved to the new one; the old account is closed."""

    old_contract: ContractNumber
    new_contract: ContractNumber
    moved: Balances = Field(description="The balances and bonus points moved from the old "
                            "contract to the new one.", examples=[_BALANCES_EXAMPLE])
    reissued_at: UtcDatetime


class SaleDecision(Event):
    """The answer to the till, on wallet.sale-decisions.v1 keyed by terminal."""

    sale_id: Identifier
    terminal_id: Identifier
    approved: bool = Field(description="True: the till may hand over the items; false: the "
                           "sale is declined.", examples=[True])
    reason: DeclineReason | None = None
    detail: str = Field(default="", max_length=200, description="When declined, e.g. the blocked "
                        "category or allergen; empty otherwise.", examples=["sweets"])
    paid_money: Kopecks = 0
    paid_bonus: Kopecks = 0
    balance_after: SignedKopecks | None = Field(default=None, description="Canteen + general "
                                                "after the sale, for the till display.")
    decided_at: UtcDatetime


# --- commands and queries on wallet.commands.v1 -----------------------------------------------

class DailyLimits(Part):
    total: Kopecks | None = Field(default=None, description="Max spend per school-local day "
                                  "over all sub-balances; None: no limit.")
    canteen: Kopecks | None = Field(default=None, description="Max canteen spend per "
                                    "school-local day, kopecks; None: no limit.",
                                    examples=[30_000])
    general: Kopecks | None = Field(default=None, description="Max spend from the general "
                                    "balance («Финансы») at the till per school-local day, "
                                    "kopecks; None: no limit. Fares are never limited: the "
                                    "ride has happened when the fare arrives.",
                                    examples=[10_000])


class SetControls(Command):
    """Primary guardian only. Fields left None are unchanged."""

    request_id: Identifier
    contract: ContractNumber
    daily_limits: DailyLimits | None = Field(
        default=None, description="New daily spending limits; None: unchanged.",
        examples=[{"total": 50_000, "canteen": 30_000, "general": None}])
    blocked_categories: list[FoodCategory] | None = Field(
        default=None, description="Food categories the till must decline; None: unchanged.",
        examples=[["sweets", "fast_food"]])
    blocked_items: list[Identifier] | None = Field(default=None, description="Blocked SKUs.")
    allergens: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, description="Declared allergen tags, a hard block at the till "
        "(lower-case, as on SaleItem); None: unchanged.", examples=[["nuts", "milk"]])
    low_balance_threshold: Kopecks | None = Field(
        default=None, description="Balance in kopecks below which the parent is warned; None: "
        "unchanged.", examples=[20_000])


class SetAutoTopUp(Command):
    request_id: Identifier
    contract: ContractNumber
    enabled: bool = Field(description="True turns auto top-up on with the threshold and "
                          "amount below; false turns it off.", examples=[True])
    threshold: Kopecks = 0
    amount: Kopecks = 0
    sub_balance: SubBalance = SubBalance.CANTEEN


class BlockCard(Command):
    request_id: Identifier
    contract: ContractNumber
    card_uid: CardUid | None = Field(
        default=None, description="One credential of the contract (the plastic card or a "
        "virtual one) to block on its own; None: the whole card account (every credential, "
        "and sales and fares from the balance).")
    reason: str = Field(default="lost", max_length=64, description="Why the card is blocked, as a "
                        "short code (e.g. lost); the balance is kept.", examples=["lost"])


class UnblockCard(Command):
    request_id: Identifier
    contract: ContractNumber
    card_uid: CardUid | None = Field(
        default=None, description="One credential of the contract (the plastic card or a "
        "virtual one) to unblock on its own; None: the whole card account (every credential, "
        "and sales and fares from the balance).")


class MoveMoney(Command):
    request_id: Identifier = Field(description="Idempotency key of the transfer.")
    contract: ContractNumber
    from_sub_balance: SubBalance
    to_sub_balance: SubBalance
    amount: PositiveKopecks


class OpenDispute(Command):
    request_id: Identifier
    contract: ContractNumber
    operation_id: Identifier
    line: int | None = Field(default=None, description="Sale line index (0-based); None for a "
                             "whole sale or a ride.", examples=[0])
    comment: str = Field(default="", max_length=500, description="The parent's explanation, "
                         "read by staff.", examples=["Булочку не выдали."])


class ResolveDispute(Command):
    """Staff (support, school admin) only."""

    request_id: Identifier
    contract: ContractNumber
    dispute_id: Identifier
    approve: bool = Field(description="True approves the dispute and refunds the refund "
                          "amount; false rejects it.", examples=[True])
    refund: Kopecks = 0


class SetGraceMeal(Command):
    """School admin: allow one meal on credit down to ``max_debt``."""

    request_id: Identifier
    school_id: SchoolId
    enabled: bool = Field(description="True allows the grace meal at this school; false "
                          "forbids it.", examples=[True])
    max_debt: Kopecks = 150_00


class RefundSaleLine(Command):
    """Staff with the refund action (support; staff bound to a school only for its own
    children): give back (part of) one sale line outside a dispute, at most what is still
    unrefunded on it. Money first (canteen as far as canteen paid, then general), then the
    points redeemed; points accrued on the money refunded are taken back. Answered
    ``CommandAccepted`` (also for a retry) or ``ErrorReply`` (``forbidden``,
    ``unknown_contract``, ``unknown_sale``, ``unknown_sale_line``, ``not_charged``,
    ``refund_exceeds_charge``, ``idempotency_conflict``); the parents get
    ``SaleLineRefunded`` with refund id ``staff:<request_id>``."""

    request_id: Identifier = Field(description="Idempotency key of the refund: a retry with "
                                   "the same id refunds once; the same id with another sale, "
                                   "line or amount is refused (idempotency_conflict).",
                                   examples=["rfd-2026-000451"])
    contract: ContractNumber
    sale_id: Identifier = Field(description="The sale refunded.", examples=["till-7-000981"])
    line: int = Field(ge=0, le=49, description="Sale line index (0-based).", examples=[0])
    amount: PositiveKopecks = Field(description="Face value to refund on the line, kopecks.",
                                    examples=[4_500])


class GetSalesReport(Query):
    """The canteen's day at one school: for the canteen supplier (role canteen_operator) and
    the school admin of that school only. Answered ``SalesReportReply``: aggregated per till
    and category, so its size is bounded by tills x categories whatever the number of sales."""

    school_id: SchoolId
    date: LocalDate = Field(description="The school-local day reported: sales and declines "
                            "sold that day, refunds made that day.", examples=["2026-09-01"])


class GetBalance(Query):
    contract: ContractNumber


class GetCards(Query):
    """The child's plastic card and virtual credentials with their states (action ``view``)."""

    contract: ContractNumber


StatementTag = Annotated[str, StringConstraints(min_length=1, max_length=33)]
"""A tag on a statement line: up to 32 letters, digits, ``_``, ``-`` and single spaces, with or
without a leading ``#``; kept case-folded without the ``#``."""


class TagStatementLine(Command):
    """A guardian (primary or co-guardian, action ``annotate``) sets the tags of one
    statement line, replacing what it had (an empty list clears them); every guardian of the
    child sees them. Answered ``CommandAccepted`` or ``ErrorReply`` (``forbidden``,
    ``unknown_contract``, ``unknown_operation``: no such line on the account,
    ``invalid_tags``)."""

    request_id: Identifier
    contract: ContractNumber
    operation_id: Identifier = Field(description="The statement line's operation id.",
                                     examples=["till-7-000981"])
    tags: list[StatementTag] = Field(max_length=5, description="At most 5 tags; the same tag "
                                     "twice (whatever its case) is kept once.",
                                     examples=[["обеды", "#school"]])


class GetStatement(Query):
    contract: ContractNumber
    date_from: LocalDate | None = Field(default=None, description="First school-local day "
                                        "included; None: no lower bound.",
                                        examples=["2026-09-01"])
    date_to: LocalDate | None = Field(default=None, description="Last school-local day "
                                      "included; None: no upper bound.",
                                      examples=["2026-09-30"])
    kinds: list[Annotated[str, StringConstraints(max_length=32)]] | None = Field(
        default=None, description="topup, sale, fare, refund, "
                                    "transfer, bonus, reissue, payout.")
    status: str | None = Field(default=None, max_length=32, description="posted | declined | "
                               "disputed (posted includes partially_refunded and refunded lines), "
                               "or partially_refunded | refunded exactly.", examples=["posted"])
    csv: bool = Field(default=False, description="Also return the page as CSV text.")
    text: str | None = Field(default=None, min_length=1, max_length=100, description="Only "
                             "lines whose note, operation id or an item's name contains this "
                             "text, whatever its case.", examples=["борщ"])
    tag: StatementTag | None = Field(default=None, description="Only lines carrying this tag "
                                     "(with or without #, any case).", examples=["обеды"])
    amount_min: Kopecks | None = Field(default=None, description="Only lines whose amount, "
                                       "the sign aside, is at least this many kopecks (a "
                                       "purchase of 45,50 ₽ is 4550).", examples=[1_000])
    amount_max: Kopecks | None = Field(default=None, description="Only lines whose amount, "
                                       "the sign aside, is at most this many kopecks.",
                                       examples=[50_000])
    limit: int = Field(default=100, ge=1, le=500, description="Most lines in one reply; "
                       "page with cursor for more.", examples=[100])
    cursor: str | None = Field(default=None, max_length=512, description="Where the page "
                               "starts: the next_cursor of the previous reply to the same query "
                               "(same contract and filters); None for the first page. Opaque.")


class StatementLine(Part):
    at: UtcDatetime
    kind: str = Field(max_length=32, description="topup, sale, fare, refund, transfer, bonus, "
                      "reissue or payout (the balance paid out on leaving the school).",
                      examples=["sale"])
    operation_id: Identifier
    amount: SignedKopecks
    sub_balance: SubBalance | None = None
    status: str = Field(max_length=32, description="posted | declined | disputed | "
                        "partially_refunded | "
                        "refunded (the last two are posted lines with refunds).",
                        examples=["posted"])
    description: str = Field(max_length=1000, description="Short note shown on the line, e.g. the "
                             "till or why it was declined.", examples=["terminal izh-42-till-1"])
    items: list[SaleItem] = Field(default_factory=list)
    tags: list[StatementTag] = Field(default_factory=list, max_length=5, description="The "
                                     "family's tags on the line (TagStatementLine), without #.",
                                     examples=[["обеды"]])


class BalanceReply(Reply):
    contract: ContractNumber
    balances: Balances | None = Field(default=None, description="Current balances; None when "
                                      "the request failed.", examples=[_BALANCES_EXAMPLE])
    blocked: bool = Field(default=False, description="True while the card is blocked (the "
                          "balance is kept).", examples=[False])


class CredentialState(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    RETIRED = "retired"


class CardCredential(Part):
    card_uid: CardUid
    kind: CredentialKind | None = Field(description="None: the plastic card.",
                                        examples=["phone_nfc"])
    state: CredentialState = Field(description="active, blocked (on its own) or retired "
                                   "(replaced).", examples=["active"])
    changed_at: UtcDatetime = Field(description="When it was issued or last changed state.")


class CardsReply(Reply):
    contract: ContractNumber
    account_blocked: bool = Field(default=False, description="True while the whole card "
                                  "account is blocked (every credential refused).")
    cards: list[CardCredential] = Field(default_factory=list, max_length=64,
                                        description="The plastic card first, then virtual "
                                        "credentials by issue time.")


class StatementReply(Reply):
    contract: ContractNumber
    lines: list[StatementLine] = Field(
        default_factory=list, description="Statement lines matching the filters.",
        examples=[[{"at": "2026-09-01T05:12:30Z", "kind": "sale", "operation_id": "till-7-000981",
                    "amount": -4_500, "sub_balance": "canteen", "status": "posted",
                    "description": "terminal izh-42-till-1"}]])
    csv: str | None = Field(default=None, max_length=REPORT_TEXT_MAX, description="The page's "
                            "lines as CSV text when csv "
                            "was requested; otherwise None.",
                            examples=["date,time,kind,status,amount_rub\r\n"])
    next_cursor: str | None = Field(default=None, max_length=512, description="Pass it back as "
                                    "cursor, with the same query, for the lines that follow; None "
                                    "when this page is the last. Lines are in a stable order, so "
                                    "lines recorded meanwhile neither repeat nor shift a page.")


class SaveTopUpTemplate(Command):
    """A guardian (action ``top_up``) saves a named top-up to repeat: a new one (no
    template_id: its id is the request id) or a change of one saved. At most 10 per child,
    names unique per child. Answered ``CommandAccepted`` or ``ErrorReply``
    (``too_many_templates``, ``template_name_conflict``, ``unknown_template``,
    ``invalid_template``)."""

    request_id: Identifier = Field(description="Idempotency key; the new template's id.")
    contract: ContractNumber
    template_id: Identifier | None = Field(default=None, description="The template changed; "
                                           "None: a new template whose id is request_id.",
                                           examples=[None])
    name: str = Field(min_length=1, max_length=40, description="What the family calls it.",
                      examples=["Обеды на неделю"])
    amount: PositiveKopecks = Field(description="Kopecks to top up.", examples=[150_000])
    sub_balance: SubBalance = Field(default=SubBalance.CANTEEN, description="The money "
                                    "sub-balance topped up (general, canteen or transit).",
                                    examples=["canteen"])


class DeleteTopUpTemplate(Command):
    """A guardian (action ``top_up``) deletes a saved top-up template (``unknown_template``
    when there is none)."""

    request_id: Identifier
    contract: ContractNumber
    template_id: Identifier


class GetTopUpTemplates(Query):
    """The child's saved top-up templates (action ``top_up``)."""

    contract: ContractNumber


class TopUpTemplate(Part):
    """A saved top-up."""

    template_id: Identifier
    name: str = Field(max_length=40, description="What the family calls it.",
                      examples=["Обеды на неделю"])
    amount: PositiveKopecks = Field(description="Kopecks to top up.", examples=[150_000])
    sub_balance: SubBalance
    updated_at: UtcDatetime


class TopUpTemplatesReply(Reply):
    contract: ContractNumber
    templates: list[TopUpTemplate] = Field(
        default_factory=list, max_length=10, description="In the order they were first saved.",
        examples=[[{"template_id": "9f0c3c1e-2b7a-4d52-8f7e-7a8f2b9c0d11",
                    "name": "Обеды на неделю", "amount": 150_000, "sub_balance": "canteen",
                    "updated_at": "2026-09-01T05:00:00Z"}]])


class GetControls(Query):
    """The child's parent controls as they stand (a guardian of the child, action ``view``):
    what SetControls, SetAutoTopUp and BlockCard set, read back. Answered ``ControlsReply`` or
    ``ErrorReply`` (``forbidden``, ``unknown_contract``)."""

    contract: ContractNumber


class AutoTopUp(Part):
    """Auto top-up as set with SetAutoTopUp."""

    enabled: bool = Field(description="True while auto top-up is on.", examples=[True])
    threshold: Kopecks = Field(description="Below this balance of the sub-balance, kopecks, "
                               "a top-up is asked for.", examples=[20_000])
    amount: Kopecks = Field(description="The amount asked for, kopecks.", examples=[100_000])
    sub_balance: SubBalance = Field(description="The sub-balance watched and topped up.",
                                    examples=["canteen"])


class ControlsReply(Reply):
    contract: ContractNumber
    daily_limits: DailyLimits | None = Field(
        default=None, description="Daily spending limits (a None limit: no limit); None "
        "when the request failed.", examples=[{"total": None, "canteen": 30_000,
                                                "general": None}])
    blocked_categories: list[FoodCategory] = Field(
        default_factory=list, max_length=64, description="Food categories the till declines.",
        examples=[["sweets"]])
    blocked_items: list[Identifier] = Field(default_factory=list, max_length=500,
                                            description="Blocked SKUs.", examples=[["cola-05"]])
    allergens: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=64, description="Declared allergen tags (lower-case), "
        "a hard block at the till.", examples=[["nuts"]])
    low_balance_threshold: Kopecks | None = Field(
        default=None, description="Below this canteen-and-general balance, kopecks, the "
        "parent is warned; None: no warning.", examples=[20_000])
    auto_top_up: AutoTopUp | None = Field(default=None, description="Auto top-up settings; "
                                          "None when the request failed.")
    card_blocked: bool = Field(default=False, description="True while the card is blocked.",
                               examples=[False])
    block_reason: str | None = Field(default=None, max_length=64, description="Why the card "
                                     "was blocked (a short code such as lost); None when it "
                                     "is not.", examples=[None])


class SalesReportLine(Part):
    """Approved sales of one category at one till (face value: points included)."""

    terminal_id: Identifier = Field(description="The till.", examples=["izh-42-till-1"])
    category: FoodCategory = Field(description="Menu category of the lines.",
                                   examples=["hot_meal"])
    sales: int = Field(ge=0, description="Approved sales with at least one line of this "
                       "category.", examples=[42])
    quantity: int = Field(ge=0, description="Items sold.", examples=[57])
    amount: Kopecks = Field(description="Face value sold, kopecks (qty x unit price).",
                            examples=[4_845_00])


class SalesReportDecline(Part):
    reason: DeclineReason
    sales: int = Field(ge=0, description="Sales declined for this reason.", examples=[3])
    amount: Kopecks = Field(description="Their face value, kopecks.", examples=[255_00])


class SalesReportRefund(Part):
    """Refunds made that day of lines of one category at one till."""

    terminal_id: Identifier = Field(description="The till.", examples=["izh-42-till-1"])
    category: FoodCategory = Field(description="Menu category of the lines.",
                                   examples=["hot_meal"])
    refunds: int = Field(ge=0, description="Refunds (staff refunds and approved disputes).",
                         examples=[1])
    amount: Kopecks = Field(description="Face value refunded, kopecks.", examples=[45_00])
    money: Kopecks = Field(description="Part given back as money, kopecks (the rest as "
                           "points).", examples=[45_00])


class SalesReportReply(Reply):
    """Totals and lines of one school's canteen day; lines sorted by till, then category."""

    school_id: SchoolId
    date: LocalDate
    approved_sales: int = Field(default=0, ge=0, description="Approved sales.",
                                examples=[120])
    approved_amount: Kopecks = Field(default=0, description="Their face value, kopecks.",
                                     examples=[10_200_00])
    paid_money: Kopecks = Field(default=0, description="Part paid from balances (grace "
                                "meals included), kopecks.", examples=[10_150_00])
    paid_bonus: Kopecks = Field(default=0, description="Part paid with bonus points.",
                                examples=[50_00])
    declined_sales: int = Field(default=0, ge=0, description="Declined sales.", examples=[4])
    declined_amount: Kopecks = Field(default=0, description="Their face value, kopecks.",
                                     examples=[340_00])
    refunds: int = Field(default=0, ge=0, description="Refunds made that day.", examples=[1])
    refunded_amount: Kopecks = Field(default=0, description="Face value refunded, kopecks.",
                                     examples=[45_00])
    refunded_money: Kopecks = Field(default=0, description="Part given back as money.",
                                    examples=[45_00])
    lines: list[SalesReportLine] = Field(default_factory=list, description="Approved sales per "
                                         "till and category.")
    declines: list[SalesReportDecline] = Field(default_factory=list, description="Declines "
                                               "per reason.")
    refund_lines: list[SalesReportRefund] = Field(default_factory=list, description="Refunds "
                                                  "per till and category.")


# --- autopay by date, services switches -------------------------------------------------------

class ScheduleAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    REMOVE = "remove"


DayOfMonth = Annotated[int, Field(ge=1, le=31, strict=True)]


class SetScheduledTopUp(Command):
    """Primary guardian (action ``change_limits``): autopay by date (PSK), beside the threshold
    auto top-up — ``amount`` to ``sub_balance`` on each of ``days_of_month`` (a day the month
    lacks means its last day), asked of the payment integrator from today on
    (``AutoTopUpRequested`` with reason ``schedule``), at most once per due date. Changing it
    keeps a paused plan paused. Answered ``CommandAccepted`` or ``ErrorReply``
    (``invalid_setting``, ``account_closed``)."""

    request_id: Identifier
    contract: ContractNumber
    days_of_month: list[DayOfMonth] = Field(min_length=1, max_length=4, description="Days of "
                                            "the month (1-31), school-local.",
                                            examples=[[1, 15]])
    amount: PositiveKopecks = Field(description="Kopecks asked on each due date.",
                                    examples=[150_000])
    sub_balance: SubBalance = Field(default=SubBalance.CANTEEN, description="The money "
                                    "sub-balance topped up.", examples=["canteen"])


class ChangeScheduledTopUp(Command):
    """Primary guardian: pause, resume (due dates that fell while paused are not asked) or
    remove the autopay by date (``unknown_schedule`` when none is set; removing none is
    accepted)."""

    request_id: Identifier
    contract: ContractNumber
    action: ScheduleAction = Field(description="pause, resume or remove.", examples=["pause"])


class SetServices(Command):
    """Primary guardian (action ``change_limits``): the services switches of the card kept by
    wallet. With ``transit_payments`` off the card still passes the gate and pays in the
    canteen, but every fare is declined ``transit_payments_off``. None: unchanged. (The SMS
    informer and push switches are notify's preferences.)"""

    request_id: Identifier
    contract: ContractNumber
    transit_payments: bool | None = Field(default=None, description="False: the card pays no "
                                          "fares; None: unchanged.", examples=[False])


class GetPaymentSettings(Query):
    """The child's autopay by date and services switches (action ``view``)."""

    contract: ContractNumber


class ScheduledTopUp(Part):
    days_of_month: list[int] = Field(max_length=4, description="Days of the month, 1-31.",
                                     examples=[[1, 15]])
    amount: PositiveKopecks = Field(description="Kopecks per due date.", examples=[150_000])
    sub_balance: SubBalance
    paused: bool = Field(description="True: no due date is asked until resumed.",
                         examples=[False])
    next_due_date: LocalDate | None = Field(description="The next school-local due date to "
                                            "ask; None while paused.", examples=["2026-10-15"])


class TransitPaymentsSwitched(Event):
    """The parent switched the card's transit payments (``SetServices``): off, wallet declines
    every fare ``transit_payments_off`` and transit may refuse the card at the validator; on,
    fares are paid again."""

    contract: ContractNumber
    enabled: bool = Field(description="True: the card pays fares; false: it does not.",
                          examples=[False])
    by_account: Identifier | None = Field(description="Who switched it (None: system).",
                                          examples=["acc_7f3a9c2e1b4d"])
    switched_at: UtcDatetime


class PaymentSettingsReply(Reply):
    contract: ContractNumber
    scheduled_top_up: ScheduledTopUp | None = Field(default=None, description="None: no "
                                                    "autopay by date.")
    transit_payments: bool = Field(description="False: fares are declined "
                                   "transit_payments_off.", examples=[True])


# --- applications -----------------------------------------------------------------------------

class ApplicationKind(StrEnum):
    NEW_CARD = "new_card"
    REFUND = "refund"


class ApplicationReason(StrEnum):
    LOST = "lost"
    DAMAGED = "damaged"
    LEAVING_SCHOOL = "leaving_school"
    OTHER = "other"


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    DONE = "done"


class ApplicationDecision(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    DONE = "done"


APPLICATION_COMMENT_MAX = 500
_KIND_DOC = ("new_card: a new card for a lost or damaged one; refund: the remaining balance "
             "paid out on leaving the school.")
_REASON_DOC = "lost or damaged (new_card), leaving_school (refund), or other."
_STATUS_DOC = "submitted -> accepted | refused; accepted -> done (refused and done are final)."


class SubmitApplication(Command):
    """A guardian applies («заявление через личный кабинет») for a new card (kind
    ``new_card``, reason lost or damaged; action ``block_card``) or for the refund of the
    remaining balance on leaving the school (kind ``refund``; primary guardian, action
    ``move_money``). The application's id is the request id. One open application of a kind
    per child (``application_open``). Answered ``CommandAccepted`` or ``ErrorReply``."""

    request_id: Identifier = Field(description="Idempotency key; the application's id.")
    contract: ContractNumber
    kind: ApplicationKind = Field(description=_KIND_DOC, examples=["new_card"])
    reason: ApplicationReason = Field(description=_REASON_DOC, examples=["lost"])
    comment: str = Field(default="", max_length=APPLICATION_COMMENT_MAX,
                         description="The parent's words.", examples=["Потеряна в автобусе"])


class HandleApplication(Command):
    """A school admin of the child's school or support (action ``resolve_dispute``) accepts,
    refuses (with a comment) or finishes an application: submitted -> accepted | refused,
    accepted -> done (a submitted one may be done at once). A refund application when done
    pays the remaining money out (one ledger operation that zeroes the account) and closes
    the account. Answered ``CommandAccepted`` or ``ErrorReply`` (``unknown_application``,
    ``application_closed``, ``comment_required``, ``debt_outstanding``)."""

    request_id: Identifier
    contract: ContractNumber
    application_id: Identifier
    decision: ApplicationDecision = Field(description="accept, refuse (a comment is "
                                          "required) or done.", examples=["accept"])
    comment: str = Field(default="", max_length=APPLICATION_COMMENT_MAX,
                         description="Staff's words to the parent; required to refuse.",
                         examples=["Новая карта готова, заберите у классного руководителя"])


class GetApplications(Query):
    """A child's applications (guardians and staff: action ``view``), or a school's (staff of
    that school: ``school_id`` instead of ``contract``), newest first, optionally by status."""

    contract: ContractNumber | None = Field(default=None, description="The child's "
                                            "applications; give this or school_id.")
    school_id: SchoolId | None = Field(default=None, description="The school's applications "
                                       "(staff of that school); give this or contract.")
    status: ApplicationStatus | None = Field(default=None, description="Only applications in "
                                             "this status; None: all.")


class Application(Part):
    application_id: Identifier
    contract: ContractNumber
    kind: ApplicationKind = Field(description=_KIND_DOC, examples=["new_card"])
    reason: ApplicationReason = Field(description=_REASON_DOC, examples=["lost"])
    status: ApplicationStatus = Field(description=_STATUS_DOC, examples=["accepted"])
    comment: str = Field(default="", max_length=APPLICATION_COMMENT_MAX,
                         description="The parent's words.")
    staff_comment: str = Field(default="", max_length=APPLICATION_COMMENT_MAX,
                               description="The last words of the staff who handled it.")
    refunded: Kopecks | None = Field(default=None, description="A done refund application: "
                                     "the kopecks paid out.", examples=[42_050])
    submitted_at: UtcDatetime
    updated_at: UtcDatetime


class ApplicationsReply(Reply):
    applications: list[Application] = Field(default_factory=list, max_length=100,
                                            description="Newest first (at most 100).")


class ApplicationStatusChanged(Event):
    """An application was submitted or its status changed; notify tells the parent."""

    application_id: Identifier
    contract: ContractNumber
    kind: ApplicationKind = Field(description=_KIND_DOC, examples=["new_card"])
    status: ApplicationStatus = Field(description=_STATUS_DOC, examples=["accepted"])
    comment: str = Field(default="", max_length=APPLICATION_COMMENT_MAX,
                         description="The staff's comment (empty on submission).")
    refunded: Kopecks | None = Field(default=None, description="Kopecks paid out by a done "
                                     "refund application.")
    changed_at: UtcDatetime
