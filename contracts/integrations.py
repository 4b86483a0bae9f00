"""Inbound contracts published by integrators: the card issuing system, banks and payment
terminals, canteen tills, school turnstiles and transport validators.

Every inbound message carries the integrator's own id of the fact (payment id, sale id, tap id)
as the idempotency key: a redelivery is answered with the same result and changes nothing; the
same id with different content is rejected.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from contracts.envelope import Event, Part
from contracts.money import MAX_AMOUNT, Kopecks, PositiveKopecks
from contracts.types import (
    CardUid,
    ContractNumber,
    Email,
    Identifier,
    SchoolId,
    SubBalance,
    TimeZoneName,
    UtcDatetime,
)


class CardIssued(Event):
    """The card issuing system issued a card under a new contract."""

    contract: ContractNumber
    card_uid: CardUid
    school_id: SchoolId
    school_tz: TimeZoneName
    student_id: Identifier = Field(description="The child's id in the issuing system; stable "
                                   "across reissues.", examples=["stu-000451"])
    class_name: str = Field(max_length=16, description="School class, e.g. '5Б'.",
                            examples=["5Б"])
    birth_date: date = Field(description="Child's birth date; auth uses it as linking proof "
                             "and for the initial password check. Only auth stores it.",
                             examples=["2014-03-08"])
    initial_password_is_birth_date: bool = Field(
        default=False, description="The contract's initial cabinet password is the birth date "
        "(DDMMYYYY); the first login must change it, and 10 wrong tries in total close the "
        "login until support unlocks it.")
    activation_code_hash: str | None = Field(
        default=None, min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$",
        description="Digest of the activation code "
        "handed to the family (in the card letter): hex SHA-256 of the UTF-8 bytes of "
        "student_id, the byte 0x1F, then the code upper-cased with spaces and dashes removed. "
        "When given, the code is the only proof that links the child (a birth date is "
        "guessable); use at least 8 random characters of a 32-letter alphabet. The code itself "
        "never travels.",
        examples=["9f2c8d3b0e6a41f7c5d2e8b1a4f07c3d6e9b2a5c8f1d4e7a0b3c6d9f2e5a8b1c"])
    issued_at: UtcDatetime


class CardReissued(Event):
    """A card was reissued (loss, school change): the new contract takes over the balance and
    history link; the old card is closed."""

    old_contract: ContractNumber
    new_contract: ContractNumber
    new_card_uid: CardUid
    school_id: SchoolId
    school_tz: TimeZoneName
    class_name: str = Field(max_length=16, description="Class at the (possibly new) school.",
                            examples=["6А"])
    reissued_at: UtcDatetime


class CredentialKind(StrEnum):
    PHONE_NFC = "phone_nfc"
    WATCH_NFC = "watch_nfc"
    QR_TOKEN = "qr_token"


class VirtualCardIssued(Event):
    """The card issuing system issued a second credential (a phone or watch NFC id, or a QR
    token) for the child of an existing contract. Gates, tills and validators accept its uid
    like the plastic card's: the same child, account, balance and journal. It is blocked and
    unblocked on its own (wallet's ``BlockCard`` with its ``card_uid``).

    Replacing a credential (a new phone; a QR token rotating) is a new ``VirtualCardIssued``
    naming the uid it ``replaces``: that uid is retired everywhere from ``issued_at`` on. A
    rotating QR token is simply a uid the issuer replaces this way at its own rhythm.
    Redelivery (same contract, uid and content) changes nothing; a uid known under another
    contract is rejected."""

    contract: ContractNumber
    card_uid: CardUid = Field(description="The credential's uid as readers see it.")
    kind: CredentialKind = Field(description="phone_nfc, watch_nfc or qr_token.",
                                 examples=["phone_nfc"])
    replaces_card_uid: CardUid | None = Field(
        default=None, description="A virtual credential of the same contract this one replaces "
        "(retired from issued_at on); never the plastic card.")
    school_id: SchoolId
    school_tz: TimeZoneName
    class_name: str = Field(max_length=16, description="School class, e.g. '5Б'.",
                            examples=["5Б"])
    issued_at: UtcDatetime

    @model_validator(mode="after")
    def _not_itself(self) -> VirtualCardIssued:
        if self.replaces_card_uid == self.card_uid:
            raise ValueError("a credential cannot replace itself")
        return self


class TopUpChannel(StrEnum):
    BANK_CARD = "bank_card"
    TERMINAL = "terminal"
    ATM = "atm"
    CASHIER = "cashier"
    AUTO_TOP_UP = "auto_top_up"


class TopUpReceived(Event):
    """A payment integrator received money for a contract."""

    payment_id: Identifier = Field(description="The integrator's payment id: the idempotency "
                                   "key. The same id with another amount or contract is "
                                   "rejected.", examples=["sbp-2026-09-01-000123"])
    contract: ContractNumber
    amount: PositiveKopecks
    sub_balance: SubBalance = Field(default=SubBalance.GENERAL,
                                    description="Sub-balance the payer chose.")
    channel: TopUpChannel = Field(description="How the money was paid: bank card in the "
                                  "cabinet, terminal, ATM, bank cashier or auto top-up.",
                                  examples=["bank_card"])
    auto_top_up_request_id: Identifier | None = Field(
        default=None, description="Set when this payment answers wallet's AutoTopUpRequested.")
    receipt_email: Email | None = Field(default=None, description="Where the e-mail receipt "
                                        "goes; only notify sees it (via wallet's receipt "
                                        "event).")
    paid_at: UtcDatetime


class AutoTopUpCollectionFailed(Event):
    """The payment integrator could not collect a planned payment wallet asked for
    (``AutoTopUpRequested``): card declined, expired, no consent. Wallet re-arms auto top-up
    and tells the parent; a request that was already answered or withdrawn is ignored. It
    changes money state, so it must carry the payment integrator's signature like
    ``TopUpReceived`` (``contracts.signing``): unsigned, it is dead-lettered
    ``unauthenticated``."""

    request_id: Identifier = Field(description="The AutoTopUpRequested that failed.",
                                   examples=["auto-40012345-3"])
    contract: ContractNumber
    reason: str = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                        description="Why, as a short snake_case code from the integrator "
                        "(card_declined, card_expired, insufficient_funds, no_consent, ...).",
                        examples=["card_declined"])
    failed_at: UtcDatetime


class FoodCategory(StrEnum):
    HOT_MEAL = "hot_meal"
    SOUP = "soup"
    SALAD = "salad"
    BAKERY = "bakery"
    DRINK = "drink"
    SWEETS = "sweets"
    FAST_FOOD = "fast_food"
    FRUIT = "fruit"
    DAIRY = "dairy"


class SaleItem(Part):
    """One line of a canteen sale."""

    sku: Identifier = Field(description="The canteen's item code.", examples=["bun-cinnamon"])
    name: str = Field(min_length=1, max_length=80, description="Name printed on the menu.",
                      examples=["Булочка с корицей"])
    category: FoodCategory = Field(description="Menu category, checked against the parent's "
                                   "blocked categories.", examples=["bakery"])
    allergens: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, description="Allergen tags, lower-case "
                                 "(e.g. gluten, milk, nuts, eggs, fish).",
                                 examples=[["gluten", "milk"]])
    qty: int = Field(ge=1, le=50, description="Quantity.", examples=[2])
    unit_price: PositiveKopecks


class CanteenSaleRequested(Event):
    """A canteen till asks to charge a card for a sale with line items; wallet answers on
    ``wallet.sale-decisions.v1`` keyed by terminal."""

    sale_id: Identifier = Field(description="Till's sale id: the idempotency key.",
                                examples=["till-7-000981"])
    terminal_id: Identifier = Field(description="The till.", examples=["izh-42-till-1"])
    school_id: SchoolId
    card_uid: CardUid
    items: list[SaleItem] = Field(min_length=1, max_length=50)
    bonus_to_redeem: Kopecks = Field(default=0, description="Bonus points the child asks to "
                                     "spend (1 point = 1 kopeck of discount).")
    sold_at: UtcDatetime

    @model_validator(mode="after")
    def _total_is_an_amount(self) -> CanteenSaleRequested:
        # Each line is bounded, their sum was not: a sale no answer (SaleDecision, SaleDeclined:
        # total <= MAX_AMOUNT) can carry is an integrator error, refused at the door.
        if sum(item.qty * item.unit_price for item in self.items) > MAX_AMOUNT:
            raise ValueError(f"the sale's total exceeds {MAX_AMOUNT} kopecks")
        return self


class GateDirection(StrEnum):
    IN = "in"
    OUT = "out"


class GateTapped(Event):
    """A turnstile read a card."""

    tap_id: Identifier = Field(description="Controller's tap id: the idempotency key.",
                               examples=["gate-3-20260901-000451"])
    gate_id: Identifier = Field(description="The turnstile.", examples=["izh-42-gate-3"])
    school_id: SchoolId
    card_uid: CardUid
    direction: GateDirection = Field(description="Passage direction set by the turnstile: in "
                                     "(entering school) or out (leaving).", examples=["in"])
    tapped_at: UtcDatetime


class TransitMode(StrEnum):
    BUS = "bus"
    TRAM = "tram"
    TROLLEYBUS = "trolleybus"
    MINIBUS = "minibus"
    METRO = "metro"


class ValidatorTapped(Event):
    """A transport validator read a card (possibly uploaded late from an offline validator)."""

    tap_id: Identifier = Field(description="Validator's tap id: the idempotency key.",
                               examples=["val-1181-000321"])
    validator_id: Identifier = Field(examples=["val-1181"], description="The validator.")
    vehicle_id: Identifier = Field(examples=["bus-2231"], description="The vehicle.")
    operator_id: Identifier = Field(default="izhevsk", examples=["izhevsk"],
                                    description="Operator/city whose fare rules apply.")
    route: str = Field(min_length=1, max_length=16, description="Route number.",
                       examples=["29"])
    mode: TransitMode = Field(description="Kind of transport the validator is on.",
                              examples=["bus"])
    stop_id: Identifier = Field(description="Stop where the tap happened.",
                                examples=["stop-central-square"])
    card_uid: CardUid
    tapped_at: UtcDatetime = Field(description="Tap time on the validator's clock (event "
                                   "time; fares are computed from it).")
    offline: bool = Field(default=False, description="True when stored offline and uploaded "
                          "later.")
