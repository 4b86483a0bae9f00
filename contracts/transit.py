"""Contracts owned by transit: rides with their fare and explanation, fare assessments that
wallet debits, corrections with refunds, the validator deny-list, fare rules and queries."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.integrations import TransitMode
from contracts.money import Kopecks, PositiveKopecks
from contracts.types import (
    REPORT_TEXT_MAX,
    CardUid,
    ContractNumber,
    Identifier,
    LocalDate,
    UtcDatetime,
)


class FareExplanation(StrEnum):
    FULL_FARE = "full_fare"
    CONCESSION = "concession"
    TRANSFER_FREE = "transfer_free"
    CAPPED = "capped"
    PARTIALLY_CAPPED = "partially_capped"
    CORRECTED_LATE_UPLOAD = "corrected_late_upload"


class RideRecorded(Event):
    """A ride with the fare charged for it and why; for the parents' statement."""

    ride_id: Identifier = Field(description="Equal to the validator tap id.")
    contract: ContractNumber
    card_uid: CardUid
    route: str = Field(max_length=16, description="Route number from the validator.",
                       examples=["29"])
    mode: TransitMode = Field(description="Kind of transport ridden.", examples=["bus"])
    stop_id: Identifier
    tapped_at: UtcDatetime
    fare: Kopecks
    explanation: FareExplanation = Field(description="Why the fare is what it is, shown to "
                                         "parents.", examples=["transfer_free"])
    offline: bool = Field(default=False, description="True when the tap was stored offline and "
                          "uploaded late.", examples=[False])


class FareAssessed(Event):
    """Wallet debits this amount once per ride id (idempotent)."""

    ride_id: Identifier
    contract: ContractNumber
    card_uid: CardUid
    amount: PositiveKopecks
    tapped_at: UtcDatetime


class FareCorrected(Event):
    """A late or out-of-order tap lowered an already assessed fare: wallet refunds the
    difference once per correction id, or, when it declined that fare for lack of money and
    has not collected it yet, writes the owed fare down by it (no money moves)."""

    correction_id: Identifier
    ride_id: Identifier = Field(description="The ride whose fare went down.")
    charged_under: Identifier | None = Field(
        default=None, description="The ride whose debit carried the money refunded: the ride "
        "itself, or a later ride whose FareAssessed absorbed an increase of this one (None: "
        "the ride itself). Wallet refunds, or writes down, that debit.",
        examples=["val-881-000124"])
    contract: ContractNumber
    refund: PositiveKopecks
    new_fare: Kopecks
    explanation: FareExplanation = Field(description="Why the fare is now new_fare.",
                                         examples=["corrected_late_upload"])
    corrected_at: UtcDatetime


class ConcessionExpiring(Event):
    contract: ContractNumber
    valid_until: LocalDate
    days_left: int = Field(description="Days left until valid_until (city-local calendar "
                           "days), for the reminder.", examples=[7])


class DenyListReason(StrEnum):
    """Why validators refuse a card; each is lifted on its own."""

    DEBT = "debt"
    CARD_BLOCKED = "card_blocked"
    TRANSIT_PAYMENTS_OFF = "transit_payments_off"


class DenyListEntry(Event):
    """Compacted access: validators cache the latest record per card uid."""

    card_uid: CardUid
    denied: bool = Field(description="True: validators refuse the card until its debt is "
                         "settled; false lifts the entry.", examples=[True])
    debt: Kopecks = Field(default=0, description="Unpaid fares (fares wallet declined for "
                          "lack of money, less the corrections since), kopecks.")
    blocked: bool = Field(default=False, description="True when the card's contract blocked "
                          "it (a lost card): refused whatever the debt.", examples=[False])
    reasons: list[DenyListReason] = Field(
        default_factory=list, description="Every reason the card is refused, kept apart: "
        "debt (unpaid fares), card_blocked (blocked or replaced), transit_payments_off (the "
        "parent switched its transit payments off). Empty when the entry is lifted; lifting "
        "one reason leaves the card denied while another holds.",
        examples=[["transit_payments_off"]])
    updated_at: UtcDatetime


RULES_MAX_CHARS = 65_536
"""Largest fare rules document (JSON characters); the shipped one is about 2 000."""


class SetFareRules(Command):
    """Operator admin: a new version of the fare rules for an operator/city (data)."""

    request_id: Identifier
    operator_id: Identifier
    version: int = Field(ge=1, description="Version number of this operator's rules "
                         "document, set by the operator admin.", examples=[3])
    rules: dict[str, Any] = Field(description="Rules document; see services/transit README. "
                                  f"At most {RULES_MAX_CHARS} characters as JSON (every "
                                  "string inside it is bounded by that).")

    @field_validator("rules")
    @classmethod
    def _rules_are_bounded(cls, rules: dict[str, Any]) -> dict[str, Any]:
        # The document's inner values are free JSON (a rulebook per mode, fare tables), so
        # no field type bounds its strings: its encoded size does.
        try:
            size = len(json.dumps(rules, ensure_ascii=False, separators=(",", ":")))
        except (TypeError, ValueError, RecursionError):
            raise ValueError("the rules document is not plain JSON data") from None
        if size > RULES_MAX_CHARS:
            raise ValueError(f"the rules document exceeds {RULES_MAX_CHARS} characters")
        return rules


class SetConcession(Command):
    request_id: Identifier
    contract: ContractNumber
    valid_until: LocalDate


class GetRides(Query):
    contract: ContractNumber
    date_from: LocalDate | None = Field(default=None, description="First city-local day included; "
                                        "None: no lower bound.", examples=["2026-09-01"])
    date_to: LocalDate | None = Field(default=None, description="Last city-local day included; "
                                      "None: no upper bound.", examples=["2026-09-30"])
    csv: bool = Field(default=False, description="Also return the page's rides as CSV text.",
                      examples=[True])
    limit: int = Field(default=100, ge=1, le=500, description="Most lines in one reply; "
                       "page with cursor for more.", examples=[100])
    cursor: str | None = Field(default=None, max_length=512, description="Where the page "
                               "starts: the next_cursor of the previous reply to the same query "
                               "(same contract and filters); None for the first page. Opaque.")


class RideLine(Part):
    ride_id: Identifier
    tapped_at: UtcDatetime
    route: str = Field(max_length=16, description="Route number.", examples=["29"])
    stop_id: Identifier
    mode: TransitMode = Field(description="Kind of transport ridden.", examples=["bus"])
    fare: Kopecks
    explanation: FareExplanation = Field(description="Why the fare is what it is.",
                                         examples=["full_fare"])


class RidesReply(Reply):
    contract: ContractNumber
    rides: list[RideLine] = Field(
        default_factory=list, description="Rides in the period, with fare and explanation.",
        examples=[[{"ride_id": "val-1181-000321", "tapped_at": "2026-09-01T04:05:00Z",
                    "route": "29", "stop_id": "stop-central-square", "mode": "bus",
                    "fare": 3_000, "explanation": "concession"}]])
    csv: str | None = Field(default=None, max_length=REPORT_TEXT_MAX, description="The page's "
                            "rides as CSV text when csv was requested; otherwise None.",
                            examples=["date,time,route\r\n"])
    next_cursor: str | None = Field(default=None, max_length=512, description="Pass it back as "
                                    "cursor, with the same query, for the lines that follow; None "
                                    "when this page is the last. Lines are in a stable order, so "
                                    "lines recorded meanwhile neither repeat nor shift a page.")
