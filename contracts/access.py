"""Contracts owned by access: gate decisions, the gate allow-list, attendance events, school
schedules and statistics queries."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.types import (
    REPORT_TEXT_MAX,
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
    NO_SCHEDULE = "no_schedule"


class GateDecision(Event):
    """The answer to a turnstile, on access.gate-decisions.v1 keyed by gate. A redelivered
    tap gets the recorded decision again."""

    tap_id: Identifier
    gate_id: Identifier
    card_uid: CardUid
    allowed: bool = Field(description="True: the turnstile opens; false: the card is denied.",
                          examples=[True])
    reason: DenyReason | None = Field(default=None, description="Why the tap was denied; set "
                                      "exactly when allowed is false.",
                                      examples=["anti_passback"])
    decided_at: UtcDatetime


class AllowListEntry(Event):
    """State of one card for the gates' local cache, on the compacted access.allow-list.v1
    keyed by card uid: the latest record per card is the truth."""

    card_uid: CardUid
    school_id: SchoolId | None = Field(description="The school whose gates may admit the card; "
                                       "None when no school is known for it.",
                                       examples=["izh-school-42"])
    allowed: bool = Field(description="Whether that school's gates may admit the card, before "
                          "schedule and anti-passback checks.", examples=[True])
    reason: DenyReason | None = Field(default=None, description="Why the card is not allowed "
                                      "(unknown or blocked card); None when allowed.",
                                      examples=["card_blocked"])
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
    reason: str = Field(default="forgotten_card", max_length=200, description="Why the guard "
                        "let the child in by hand, as a short code.",
                        examples=["forgotten_card"])
    at: UtcDatetime
    local_date: LocalDate


class LateArrivalDetected(Event):
    """At most once per student and school day."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    arrived_at: UtcDatetime
    lesson_start: LocalTime
    minutes_late: int = Field(ge=1, description="Whole minutes from the first lesson start "
                              "(school-local) to the entry.", examples=[12])


class AttendanceDayClosed(Event):
    """A student's school day is complete (last exit after the last session, or the gates
    closed); at most once per student and school day."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    first_arrival: UtcDatetime | None = Field(default=None, description="First entry of the "
                                              "day (UTC); None when the child never entered.",
                                              examples=["2026-09-01T04:25:10Z"])
    last_exit: UtcDatetime | None = Field(default=None, description="Last exit of the day "
                                          "(UTC); None when no exit was recorded.",
                                          examples=["2026-09-01T10:05:42Z"])
    late: bool = Field(default=False, description="True when the first entry came after the "
                       "first lesson start.", examples=[False])
    closed_by: str = Field(default="last_exit", max_length=32, description="What closed the day: "
                           "last_exit (left after the last session) or end_of_day (the gates "
                           "closed).", examples=["last_exit"])


class NotInSchoolAtLessonStart(Event):
    """No entry when the first lesson of a school day began; at most once per student and
    day. The student may still come (late) or not at all (see AbsenceDetected at the cut-off);
    notify joins it with the morning rides for the "rode but did not arrive" alert."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    lesson_start: LocalTime = Field(description="The first lesson start, school-local.",
                                    examples=["08:30"])
    lesson_start_at: UtcDatetime = Field(description="The same instant in UTC.",
                                         examples=["2026-09-01T04:30:00Z"])


class AbsenceDetected(Event):
    """No entry by the school's cut-off; at most once per student and school day."""

    contract: ContractNumber
    school_id: SchoolId
    local_date: LocalDate
    cutoff: LocalTime


# --- commands and queries on access.commands.v1 (key: school id) ------------------------------

class SessionSlot(Part):
    name: str = Field(max_length=80, examples=["Математика"],
                      description="Name of the lesson, course or extra class shown to parents.")
    weekday: int = Field(ge=0, le=6, description="0 = Monday.")
    start: LocalTime
    end: LocalTime
    group: str | None = Field(default=None, max_length=80,
                              description="Class or group; None: whole school.")
    kind: Literal["lesson", "course", "extra"] = Field(
        default="lesson", description="Lesson, course or extra class.", examples=["lesson"])


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
    hours: list[DayHours] = Field(
        description="Gate hours and first lesson per weekday, school-local.",
        examples=[[{"weekday": 0, "opens": "07:30", "closes": "19:00",
                    "first_lesson": "08:30"}]])
    absence_cutoff: LocalTime = "10:00"
    holidays: list[LocalDate] = Field(
        default_factory=list, description="School-local dates the school is closed: no late or "
        "absence detection.", examples=[["2026-11-04"]])
    sessions: list[SessionSlot] = Field(
        default_factory=list, description="Lessons, courses and extra classes of the week, for "
        "the attendance register.",
        examples=[[{"name": "Математика", "weekday": 0, "start": "08:30", "end": "09:15",
                    "group": "5Б"}]])


class RecordManualEntry(Command):
    request_id: Identifier = Field(description="Idempotency key of the manual entry.")
    school_id: SchoolId
    contract: ContractNumber
    guard_id: Identifier
    reason: str = Field(default="forgotten_card", max_length=200, description="Why the guard "
                        "let the child in by hand, as a short code.",
                        examples=["forgotten_card"])
    at: UtcDatetime


class GetClassRegister(Query):
    school_id: SchoolId
    class_name: str = Field(max_length=80, description="School class, e.g. '5Б'.",
                            examples=["5Б"])
    local_date: LocalDate
    csv: bool = Field(default=False, description="Also return the register as CSV text.",
                      examples=[True])


class GetStudentStats(Query):
    contract: ContractNumber
    date_from: LocalDate
    date_to: LocalDate
    csv: bool = Field(default=False, description="Also return the statistics as CSV text.",
                      examples=[True])
    chart: bool = Field(default=False, description="Also return an SVG chart of arrival times.")
    by_month: bool = Field(default=False, description="Also return one line per calendar "
                           "month of the period (the first and last clipped to it), each with "
                           "its absent days; the CSV then has a line per month and one for the "
                           "whole period. The period is at most 366 days.", examples=[True])


class GetEntryLog(Query):
    """A child's entries and exits day by day over a period of at most 366 days, for a
    guardian of the child (action ``view``) or the staff of the child's school
    (``view_attendance``). Answered ``EntryLogReply``, in pages of days."""

    contract: ContractNumber
    date_from: LocalDate = Field(description="First school-local day of the period.",
                                 examples=["2026-09-01"])
    date_to: LocalDate = Field(description="Last school-local day of the period (at most 365 "
                               "days after date_from).", examples=["2026-09-30"])
    limit: int = Field(default=31, ge=1, le=100, description="Most days in one reply; page with "
                       "cursor for more.", examples=[31])
    cursor: str | None = Field(default=None, max_length=512, description="Where the page "
                               "starts: the next_cursor of the previous reply to the same query "
                               "(same contract and period); None for the first page. Opaque.")


class RegisterLine(Part):
    contract: ContractNumber
    arrived_at: UtcDatetime | None = Field(description="First entry of the day (UTC); None "
                                           "when the child did not enter.",
                                           examples=["2026-09-01T04:25:10Z"])
    left_at: UtcDatetime | None = Field(description="Last exit of the day (UTC); None when no "
                                        "exit was recorded.",
                                        examples=["2026-09-01T10:05:42Z"])
    late: bool = Field(description="True when the first entry came after the first lesson "
                       "start.", examples=[False])
    absent: bool = Field(description="True when a lesson day had no entry by the absence "
                         "cut-off.", examples=[False])


class ClassRegisterReply(Reply):
    lines: list[RegisterLine] = Field(
        default_factory=list, description="One line per student of the class for the day.",
        examples=[[{"contract": "40012345", "arrived_at": "2026-09-01T04:25:10Z",
                    "left_at": None, "late": False, "absent": False}]])
    csv: str | None = Field(default=None, max_length=REPORT_TEXT_MAX, description="The register as "
                            "CSV text when csv was requested; otherwise None.",
                            examples=["date,contract,class,arrived,left,late,absent,manual\r\n"])


class MonthStats(Part):
    """One calendar month of a period (clipped to it)."""

    month: str = Field(pattern=r"^\d{4}-\d{2}$", max_length=7, description="The month, "
                       "YYYY-MM.", examples=["2026-09"])
    date_from: LocalDate = Field(description="Its first day in the period.",
                                 examples=["2026-09-01"])
    date_to: LocalDate = Field(description="Its last day in the period.", examples=["2026-09-30"])
    lesson_days: int = Field(ge=0, description="Lesson days elapsed (past the absence cut-off).",
                             examples=[21])
    days_present: int = Field(ge=0, description="Days with at least one entry.", examples=[19])
    late_count: int = Field(ge=0, description="Days with a late arrival.", examples=[2])
    absent_days: list[LocalDate] = Field(
        default_factory=list, max_length=31, description="Lesson days without an entry, by "
        "date.", examples=[["2026-09-14", "2026-09-15"]])
    average_arrival: LocalTime | None = Field(default=None, description="Mean time of the first "
                                              "entry, school-local; None without entries.",
                                              examples=["08:17"])


class EntryPassage(Part):
    """One entry or exit."""

    at: UtcDatetime
    direction: Literal["in", "out"] = Field(description="in: an entry; out: an exit.",
                                            examples=["in"])
    source: Literal["tap", "manual"] = Field(description="tap: the card at a gate; manual: a "
                                             "guard let the child in.", examples=["tap"])
    gate_id: Identifier | None = Field(default=None, description="The gate of a tap.",
                                       examples=["izh-42-gate-3"])


class EntryLogDay(Part):
    """A school-local day of the entry log."""

    local_date: LocalDate
    arrived_at: UtcDatetime | None = Field(default=None, description="First entry (UTC); None "
                                           "when the child did not enter.",
                                           examples=["2026-09-01T04:25:10Z"])
    left_at: UtcDatetime | None = Field(default=None, description="Last exit (UTC); None when "
                                        "no exit was recorded.",
                                        examples=["2026-09-01T10:05:42Z"])
    late: bool = Field(default=False, description="The first entry came after the first lesson "
                       "start.", examples=[False])
    absent: bool = Field(default=False, description="A lesson day without an entry by the "
                         "absence cut-off.", examples=[False])
    passages: list[EntryPassage] = Field(
        default_factory=list, max_length=48, description="Entries and exits in time order (the "
        "first 48).", examples=[[{"at": "2026-09-01T04:25:10Z", "direction": "in",
                                  "source": "tap", "gate_id": "izh-42-gate-3"}]])
    passage_count: int = Field(default=0, ge=0, description="All passages of the day.",
                               examples=[2])


class EntryLogReply(Reply):
    contract: ContractNumber
    today: LocalDate | None = Field(default=None, description="Today in the school's time "
                                    "zone (the school's schedule).", examples=["2026-09-01"])
    time_zone: TimeZoneName | None = Field(default=None, description="The school's IANA time "
                                           "zone the days are counted in.",
                                           examples=["Europe/Samara"])
    days: list[EntryLogDay] = Field(
        default_factory=list, max_length=100, description="Days of the page by date: every "
        "elapsed lesson day (absent ones too) and every day with a passage.",
        examples=[[{"local_date": "2026-09-01", "arrived_at": "2026-09-01T04:25:10Z",
                    "left_at": None, "late": False, "absent": False, "passages": [],
                    "passage_count": 1}]])
    next_cursor: str | None = Field(default=None, max_length=512, description="Pass it back as "
                                    "cursor, with the same query, for the days that follow; "
                                    "None when this page is the last.")


class StudentStatsReply(Reply):
    contract: ContractNumber
    today: LocalDate | None = Field(default=None, description="Today in the school's time "
                                    "zone (the school's schedule).", examples=["2026-09-01"])
    time_zone: TimeZoneName | None = Field(default=None, description="The school's IANA time "
                                           "zone the days are counted in.",
                                           examples=["Europe/Samara"])
    days_present: int = Field(default=0, description="School days in the period with at least "
                              "one entry.", examples=[18])
    late_count: int = Field(default=0, description="School days in the period with a late "
                            "arrival.", examples=[2])
    average_arrival: LocalTime | None = Field(default=None, description="Mean time of the first "
                                              "entry, school-local; None without entries.",
                                              examples=["08:17"])
    csv: str | None = Field(default=None, max_length=REPORT_TEXT_MAX, description="The statistics "
                            "as CSV text when csv was requested; otherwise None.",
                            examples=["contract,from,to,lesson_days,present,absent,late,"
                                      "average_arrival\r\n"])
    chart_svg: str | None = Field(default=None, max_length=REPORT_TEXT_MAX, description="SVG chart "
                                  "of arrival times when chart was requested; otherwise None.",
                                  examples=["<svg xmlns='http://www.w3.org/2000/svg'></svg>"])
    lesson_days: int = Field(default=0, ge=0, description="Lesson days of the period elapsed "
                             "(past the absence cut-off).", examples=[21])
    absent_days: list[LocalDate] = Field(
        default_factory=list, max_length=366, description="Lesson days of the period without "
        "an entry, by date.", examples=[["2026-09-14"]])
    months: list[MonthStats] = Field(
        default_factory=list, max_length=13, description="One line per calendar month when "
        "by_month was requested; otherwise empty.",
        examples=[[{"month": "2026-09", "date_from": "2026-09-01", "date_to": "2026-09-30",
                    "lesson_days": 21, "days_present": 19, "late_count": 2,
                    "absent_days": ["2026-09-14", "2026-09-15"], "average_arrival": "08:17"}]])
