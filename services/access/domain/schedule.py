"""A school's timetable as data: time zone, gate hours, first lessons, cut-off, holidays, sessions.

All "daily" rules are in the school's local time: the school day of an instant is its calendar
date in the school's IANA zone, and the hours below are local wall-clock times. Weekdays are
numbered like :meth:`datetime.date.weekday` (Monday = 0 ... Sunday = 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .common import (
    Doc,
    IdempotencyConflict,
    InvalidInput,
    ValidationReason,
    date_from_doc,
    date_to_doc,
    fingerprint,
    opt_dt_from_doc,
    require_aware,
    require_text,
    time_from_doc,
    time_to_doc,
)
from .events import SchoolScheduleSet

RECENT_COMMANDS_KEPT = 32


class SessionKind(StrEnum):
    LESSON = "lesson"
    COURSE = "course"
    EXTRA = "extra"


def _check_weekday(weekday: int) -> None:
    if not 0 <= weekday <= 6:
        raise InvalidInput(ValidationReason.BAD_WEEKDAY, f"weekday {weekday} is not in 0..6")


@dataclass(frozen=True, slots=True)
class WeekdayHours:
    """Gates open from ``opens`` to ``closes`` (local, same day); ``first_lesson`` sets lateness.

    A weekday without a ``WeekdayHours`` entry is a closed day. ``first_lesson`` may be None on a
    day with only clubs: nobody is late or absent on such a day.
    """

    weekday: int
    opens: time
    closes: time
    first_lesson: time | None

    def __post_init__(self) -> None:
        _check_weekday(self.weekday)
        if not self.opens < self.closes:
            raise InvalidInput(
                ValidationReason.BAD_OPENING_HOURS,
                f"weekday {self.weekday}: opens {self.opens} is not before closes {self.closes}",
            )

    def to_doc(self) -> Doc:
        return {
            "weekday": self.weekday,
            "opens": time_to_doc(self.opens),
            "closes": time_to_doc(self.closes),
            "first_lesson": None if self.first_lesson is None else time_to_doc(self.first_lesson),
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> WeekdayHours:
        first = doc.get("first_lesson")
        return cls(
            weekday=int(doc["weekday"]),
            opens=time_from_doc(doc["opens"]),
            closes=time_from_doc(doc["closes"]),
            first_lesson=None if first is None else time_from_doc(first),
        )


@dataclass(frozen=True, slots=True)
class Session:
    """A scheduled lesson, course or extra class; ``group`` None means the whole school."""

    name: str
    kind: SessionKind
    weekday: int
    start: time
    end: time
    group: str | None = None

    def __post_init__(self) -> None:
        require_text(self.name, "session name")
        _check_weekday(self.weekday)
        if not self.start < self.end:
            raise InvalidInput(
                ValidationReason.BAD_SESSION, f"session {self.name!r} does not end after it starts"
            )

    def concerns(self, class_name: str) -> bool:
        return self.group is None or self.group == class_name

    def to_doc(self) -> Doc:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "weekday": self.weekday,
            "start": time_to_doc(self.start),
            "end": time_to_doc(self.end),
            "group": self.group,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> Session:
        return cls(
            name=str(doc["name"]),
            kind=SessionKind(doc["kind"]),
            weekday=int(doc["weekday"]),
            start=time_from_doc(doc["start"]),
            end=time_from_doc(doc["end"]),
            group=doc.get("group"),
        )


@dataclass(frozen=True, slots=True)
class ScheduleData:
    """Everything a school admin sets in one command; validated on construction."""

    school_id: str
    timezone: str
    weekdays: tuple[WeekdayHours, ...]
    absence_cutoff: time
    holidays: frozenset[date] = frozenset()
    sessions: tuple[Session, ...] = ()

    def __post_init__(self) -> None:
        require_text(self.school_id, "school_id")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(
                ValidationReason.BAD_TIMEZONE, f"unknown time zone {self.timezone!r}"
            ) from exc
        seen = [hours.weekday for hours in self.weekdays]
        if len(seen) != len(set(seen)):
            raise InvalidInput(ValidationReason.BAD_WEEKDAY, "a weekday has two sets of hours")

    def to_doc(self) -> Doc:
        return {
            "school_id": self.school_id,
            "timezone": self.timezone,
            "weekdays": [h.to_doc() for h in sorted(self.weekdays, key=lambda h: h.weekday)],
            "absence_cutoff": time_to_doc(self.absence_cutoff),
            "holidays": sorted(date_to_doc(d) for d in self.holidays),
            "sessions": [s.to_doc() for s in self.sessions],
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> ScheduleData:
        return cls(
            school_id=str(doc["school_id"]),
            timezone=str(doc["timezone"]),
            weekdays=tuple(WeekdayHours.from_doc(h) for h in doc["weekdays"]),
            absence_cutoff=time_from_doc(doc["absence_cutoff"]),
            holidays=frozenset(date_from_doc(d) for d in doc["holidays"]),
            sessions=tuple(Session.from_doc(s) for s in doc["sessions"]),
        )


@dataclass(frozen=True, slots=True)
class SetSchoolSchedule:
    """School-admin command: replace the schedule; ``command_id`` is the idempotency key."""

    command_id: str
    data: ScheduleData


@dataclass(slots=True)
class SchoolSchedule:
    """The schedule aggregate of one school (one document per school)."""

    data: ScheduleData
    version: int = 1
    updated_at: datetime | None = None
    # command id -> fingerprint of its data, newest last; bounded because admin commands are rare
    # and the runtime inbox already filters plain redeliveries.
    recent_commands: dict[str, str] = field(default_factory=dict)

    @property
    def school_id(self) -> str:
        return self.data.school_id

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.data.timezone)

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.zone)

    def school_day(self, at: datetime) -> date:
        """The local calendar date of an instant: the key of the attendance day record."""
        return self.local(at).date()

    def hours_on(self, day: date) -> WeekdayHours | None:
        """Gate hours of a calendar day; None on a holiday or a weekday without hours."""
        if day in self.data.holidays:
            return None
        for hours in self.data.weekdays:
            if hours.weekday == day.weekday():
                return hours
        return None

    def is_open(self, at: datetime) -> bool:
        """True when gates let people in at ``at``: a school day and ``opens <= local < closes``."""
        local = self.local(at)
        hours = self.hours_on(local.date())
        if hours is None:
            return False
        return hours.opens <= local.time() < hours.closes

    def first_lesson_on(self, day: date) -> time | None:
        hours = self.hours_on(day)
        return None if hours is None else hours.first_lesson

    def has_lessons(self, day: date) -> bool:
        """A day on which lateness and absence are judged."""
        return self.first_lesson_on(day) is not None

    def instant(self, day: date, local_time: time) -> datetime:
        """The UTC instant of a local wall-clock time on a school day (DST-correct, fold 0)."""
        return datetime.combine(day, local_time, tzinfo=self.zone).astimezone(UTC)

    def cutoff_at(self, day: date) -> datetime:
        return self.instant(day, self.data.absence_cutoff)

    def lesson_start_at(self, day: date) -> datetime | None:
        """The first lesson of ``day`` as an instant; None on a day without lessons."""
        first = self.first_lesson_on(day)
        return None if first is None or not self.has_lessons(day) else self.instant(day, first)

    def sessions_for(self, day: date, class_name: str) -> list[Session]:
        if self.hours_on(day) is None:
            return []
        found = [
            s for s in self.data.sessions if s.weekday == day.weekday() and s.concerns(class_name)
        ]
        return sorted(found, key=lambda s: (s.start, s.end, s.name))

    def last_session_end(self, day: date, class_name: str) -> time | None:
        sessions = self.sessions_for(day, class_name)
        return max((s.end for s in sessions), default=None)

    def day_end_at(self, day: date) -> datetime:
        """When a day is over for closing purposes: gate closing time, else local midnight."""
        hours = self.hours_on(day)
        if hours is not None:
            return self.instant(day, hours.closes)
        return self.instant(date.fromordinal(day.toordinal() + 1), time(0, 0))

    def due_sweeps(self, now: datetime, lookback_days: int = 2) -> list[tuple[date, str]]:
        """The periodic jobs due at ``now`` for today and the ``lookback_days`` before it:
        ``(day, "lessons")`` once the first lesson began and ``(day, "absence")`` once the
        day's absence cut-off passed (lesson days only), ``(day, "close")`` once the day is
        over. The caller remembers which ones it has done."""
        now = require_aware(now, "now")
        today = self.school_day(now)
        due: list[tuple[date, str]] = []
        for back in range(lookback_days, -1, -1):
            day = today - timedelta(days=back)
            start = self.lesson_start_at(day)
            if start is not None and now >= start:
                due.append((day, "lessons"))
            if self.has_lessons(day) and now >= self.cutoff_at(day):
                due.append((day, "absence"))
            if now >= self.day_end_at(day):
                due.append((day, "close"))
        return due

    def school_days(self, start: date, end: date) -> list[date]:
        """Days in ``[start, end]`` with lessons (holidays and closed weekdays excluded)."""
        return [
            date.fromordinal(n)
            for n in range(start.toordinal(), end.toordinal() + 1)
            if self.has_lessons(date.fromordinal(n))
        ]

    def to_doc(self) -> Doc:
        return {
            "school_id": self.school_id,
            "data": self.data.to_doc(),
            "version": self.version,
            "updated_at": self.updated_at,
            "recent_commands": [
                {"command_id": k, "fingerprint": v} for k, v in self.recent_commands.items()
            ],
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> SchoolSchedule:
        return cls(
            data=ScheduleData.from_doc(doc["data"]),
            version=int(doc["version"]),
            updated_at=opt_dt_from_doc(doc.get("updated_at")),
            recent_commands={
                str(c["command_id"]): str(c["fingerprint"]) for c in doc["recent_commands"]
            },
        )


@dataclass(frozen=True, slots=True)
class ScheduleOutcome:
    schedule: SchoolSchedule
    events: tuple[SchoolScheduleSet, ...]
    replayed: bool


def apply_schedule_command(
    current: SchoolSchedule | None, command: SetSchoolSchedule, now: datetime
) -> ScheduleOutcome:
    """Replace a school's schedule.

    Idempotent on ``command_id``: a replay returns the current schedule and no event; the same id
    with different data raises :class:`IdempotencyConflict`. ``current`` is mutated in place.
    """
    require_text(command.command_id, "command_id")
    now = require_aware(now, "now")
    digest = fingerprint(command.data.to_doc())
    if current is not None:
        if current.school_id != command.data.school_id:
            raise ValueError("the loaded schedule belongs to another school")
        known = current.recent_commands.get(command.command_id)
        if known is not None:
            if known != digest:
                raise IdempotencyConflict(command.command_id, "schedule command reused")
            return ScheduleOutcome(current, (), replayed=True)
        current.data = command.data
        current.version += 1
        current.updated_at = now
        schedule = current
    else:
        schedule = SchoolSchedule(data=command.data, version=1, updated_at=now)
    schedule.recent_commands[command.command_id] = digest
    while len(schedule.recent_commands) > RECENT_COMMANDS_KEPT:
        del schedule.recent_commands[next(iter(schedule.recent_commands))]
    event = SchoolScheduleSet(
        command_id=command.command_id,
        school_id=schedule.school_id,
        version=schedule.version,
        timezone=schedule.data.timezone,
    )
    return ScheduleOutcome(schedule, (event,), replayed=False)


def holidays_between(start: date, end: date, extra: Iterable[date] = ()) -> frozenset[date]:
    """Convenience for admins: every day of ``[start, end]`` (a vacation) plus ``extra`` dates."""
    days = {date.fromordinal(n) for n in range(start.toordinal(), end.toordinal() + 1)}
    return frozenset(days | set(extra))
