"""Contracts owned by transit: rides with their fare and explanation, fare assessments that
wallet debits, corrections with refunds, the validator deny-list, fare rules and queries."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.integrations import TransitMode
from contracts.money import Kopecks, PositiveKopecks
from contracts.types import (
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
    route: str
    mode: TransitMode
    stop_id: Identifier
    tapped_at: UtcDatetime
    fare: Kopecks
    explanation: FareExplanation
    offline: bool = False


class FareAssessed(Event):
    """Wallet debits this amount once per ride id (idempotent)."""

    ride_id: Identifier
    contract: ContractNumber
    card_uid: CardUid
    amount: PositiveKopecks
    tapped_at: UtcDatetime


class FareCorrected(Event):
    """A late or out-of-order tap lowered an already charged fare: wallet refunds the
    difference once per correction id."""

    correction_id: Identifier
    ride_id: Identifier
    contract: ContractNumber
    refund: PositiveKopecks
    new_fare: Kopecks
    explanation: FareExplanation
    corrected_at: UtcDatetime


class ConcessionExpiring(Event):
    contract: ContractNumber
    valid_until: LocalDate
    days_left: int


class DenyListEntry(Event):
    """Compacted access: validators cache the latest record per card uid."""

    card_uid: CardUid
    denied: bool
    debt: Kopecks = Field(default=0, description="Unpaid fares.")
    updated_at: UtcDatetime


class SetFareRules(Command):
    """Operator admin: a new version of the fare rules for an operator/city (data)."""

    request_id: Identifier
    operator_id: Identifier
    version: int = Field(ge=1)
    rules: dict[str, Any] = Field(description="Rules document; see services/transit README.")


class SetConcession(Command):
    request_id: Identifier
    contract: ContractNumber
    valid_until: LocalDate


class GetRides(Query):
    contract: ContractNumber
    date_from: LocalDate | None = None
    date_to: LocalDate | None = None
    csv: bool = False


class RideLine(Part):
    ride_id: Identifier
    tapped_at: UtcDatetime
    route: str
    stop_id: Identifier
    mode: TransitMode
    fare: Kopecks
    explanation: FareExplanation


class RidesReply(Reply):
    contract: ContractNumber
    rides: list[RideLine] = Field(default_factory=list)
    csv: str | None = None
