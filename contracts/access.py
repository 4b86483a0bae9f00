"""Contracts owned by access: gate decisions, the gate allow-list, attendance events, school
schedules and statistics queries."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.integrations import GateDirection
from contracts.types import (
    CardUid,
    ContractNumber,
    Identifier,
    LocalDate,
    LocalTime,
    SchoolId,
    TimeZoneName,
    UtcDatetime,
)


class DenyReason(StrEnum):
    UNKNOWN_CARD = "unknown_card"
    CARD_BLOCKED = "card_blocked"
    OTHER_SCHOOL = "other_school"
    OUTSIDE_SCHEDULE = "outside_schedule"
    ANTI_PASSBACK = "anti_passback"


class GateDecision(Event):
    """The answer to a turnstile, on access.gate-decisions.v1 keyed by gate. A redelivered
    tap gets the recorded decision again."""

    tap_id: Identifier
    gate_id: Identifier
    card_uid: CardUid
    allowed: bool
    reason: DenyReason | None = None
    decided_at: UtcDatetime


class AllowListEntry(Event):
    """State of one card for the gates' local cache, on the compacted access.allow-list.v1
    keyed by card uid: the latest record per card is the truth."""

    card_uid: CardUid
    school_id: SchoolId | None
    allowed: bool
    reason: DenyReason | None = None
    updated_at: UtcDatetime


# --- events on access.events.v1 (key: contract) -----------------------------------------------

class StudentEntered(Event):
    contract: ContractNumber
    school_id: SchoolId
    gate_id: Identifier
    tap_id: Identifier
    at: UtcDatetime
    local_date: LocalDate


class StudentLeft(Event):
    contract: ContractNumber
    school_id: SchoolId
    gate_id: Identifier
    tap_id: Identifier
    at: UtcDatetime
    local_date: LocalDate


class ManualEntryRecorded(Event):
    """A guard let the child in without a card (forgotten card); parents are told."""

    contract: ContractNumber
    school_id: SchoolId
    guard_id: Identifier
    entry_id: Identifier
    reason: str = Field(default="forgotten_card")
    at: UtcDatetime
    local_date: LocalDate


class LateArrivalDetected(Event):
    """At most once per student and school day."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    arrived_at: UtcDatetime
    lesson_start: LocalTime
    minutes_late: int = Field(ge=1)


class AbsenceDetected(Event):
    """No entry by the school's cut-off; at most once per student and school day."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    cutoff: LocalTime


# --- commands and queries on access.commands.v1 (key: school id) ------------------------------

class SessionSlot(Part):
    name: str = Field(max_length=80, examples=["Математика"])
    weekday: int = Field(ge=0, le=6, description="0 = Monday.")
    start: LocalTime
    end: LocalTime
    group: str | None = Field(default=None, description="Class or group; None: whole school.")


class DayHours(Part):
    weekday: int = Field(ge=0, le=6, description="0 = Monday.")
    opens: LocalTime
    closes: LocalTime
    first_lesson: LocalTime


class SetSchoolSchedule(Command):
    """School admin: the school's hours, lessons and holidays (data, not code)."""

    request_id: Identifier
    school_id: SchoolId
    time_zone: TimeZoneName
    hours: list[DayHours]
    absence_cutoff: LocalTime = "10:00"
    holidays: list[LocalDate] = Field(default_factory=list)
    sessions: list[SessionSlot] = Field(default_factory=list)


class RecordManualEntry(Command):
    request_id: Identifier = Field(description="Idempotency key of the manual entry.")
    school_id: SchoolId
    contract: ContractNumber
    guard_id: Identifier
    reason: str = "forgotten_card"
    at: UtcDatetime


class GetClassRegister(Query):
    school_id: SchoolId
    class_name: str
    local_date: LocalDate
    csv: bool = False


class GetStudentStats(Query):
    contract: ContractNumber
    date_from: LocalDate
    date_to: LocalDate
    csv: bool = False
    chart: bool = Field(default=False, description="Also return an SVG chart of arrival times.")


class RegisterLine(Part):
    contract: ContractNumber
    arrived_at: UtcDatetime | None
    left_at: UtcDatetime | None
    late: bool
    absent: bool


class ClassRegisterReply(Reply):
    lines: list[RegisterLine] = Field(default_factory=list)
    csv: str | None = None


class StudentStatsReply(Reply):
    contract: ContractNumber
    days_present: int = 0
    late_count: int = 0
    average_arrival: LocalTime | None = None
    csv: str | None = None
    chart_svg: str | None = None
