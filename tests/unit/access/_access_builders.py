"""Plain builders shared by the access unit tests (no fixtures: the domain needs none)."""

from __future__ import annotations

from datetime import date, datetime, time
from itertools import count
from zoneinfo import ZoneInfo

from services.access.domain import (
    CardIssued,
    CardRecord,
    Direction,
    GateTap,
    ScheduleData,
    SchoolSchedule,
    Session,
    SessionKind,
    SetSchoolSchedule,
    WeekdayHours,
    apply_schedule_command,
    project_card,
)

SCHOOL = "school-izh-42"
OTHER_SCHOOL = "school-izh-7"
ZONE_NAME = "Europe/Samara"
ZONE = ZoneInfo(ZONE_NAME)
MONDAY = date(2025, 9, 1)
HOLIDAY = date(2025, 11, 4)

_ids = count(1)


def local(day: date, hhmm: str) -> datetime:
    """An aware instant at a local school wall-clock time (seconds allowed: ``"08:30:01"``)."""
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=ZONE)


def schedule_data(school_id: str = SCHOOL) -> ScheduleData:
    weekdays = (
        *(WeekdayHours(wd, time(7, 0), time(19, 0), time(8, 30)) for wd in range(5)),
        WeekdayHours(5, time(9, 0), time(14, 0), None),
    )
    sessions = (
        *(Session(f"lessons {cls}", SessionKind.LESSON, wd, time(8, 30), time(13, 50), cls)
          for wd in range(5) for cls in ("5A", "5B")),
        Session("chess", SessionKind.EXTRA, 2, time(15, 0), time(16, 0), "5A"),
        Session("assembly", SessionKind.COURSE, 0, time(8, 0), time(8, 25), None),
    )
    return ScheduleData(
        school_id=school_id,
        timezone=ZONE_NAME,
        weekdays=weekdays,
        absence_cutoff=time(10, 0),
        holidays=frozenset({HOLIDAY}),
        sessions=sessions,
    )


def make_schedule(school_id: str = SCHOOL) -> SchoolSchedule:
    command = SetSchoolSchedule(f"cmd-{next(_ids)}", schedule_data(school_id))
    return apply_schedule_command(None, command, local(MONDAY, "06:00")).schedule


def make_card(
    uid: str = "04A1B2C3",
    contract: str = "12345678",
    school_id: str = SCHOOL,
    class_name: str = "5A",
) -> CardRecord:
    fact = CardIssued(f"iss-{uid}", uid, contract, school_id, class_name, local(MONDAY, "00:00"))
    return project_card(None, fact).card


def make_tap(
    at: datetime,
    card_uid: str = "04A1B2C3",
    direction: Direction = Direction.IN,
    gate_id: str = "gate-1",
    school_id: str = SCHOOL,
    tap_id: str | None = None,
) -> GateTap:
    return GateTap(
        tap_id=tap_id or f"tap-{next(_ids)}",
        gate_id=gate_id,
        school_id=school_id,
        card_uid=card_uid,
        direction=direction,
        tapped_at=at,
    )
