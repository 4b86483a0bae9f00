from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from _access_builders import HOLIDAY, MONDAY, SCHOOL, local, make_schedule, schedule_data

from services.access.domain import (
    IdempotencyConflict,
    InvalidInput,
    ScheduleData,
    SchoolSchedule,
    SchoolScheduleSet,
    Session,
    SessionKind,
    SetSchoolSchedule,
    ValidationReason,
    WeekdayHours,
    apply_schedule_command,
    holidays_between,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 9, 1, 3, 0, tzinfo=UTC)


def test_setting_a_schedule_creates_version_one_and_records_an_event() -> None:
    outcome = apply_schedule_command(None, SetSchoolSchedule("c-1", schedule_data()), NOW)

    assert outcome.schedule.version == 1
    assert outcome.events == (SchoolScheduleSet("c-1", SCHOOL, 1, "Europe/Samara"),)


def test_replacing_a_schedule_bumps_the_version() -> None:
    schedule = make_schedule()
    data = schedule_data()
    changed = ScheduleData(
        data.school_id, data.timezone, data.weekdays, time(11, 0), data.holidays, data.sessions
    )

    outcome = apply_schedule_command(schedule, SetSchoolSchedule("c-new", changed), NOW)

    assert outcome.schedule.version == 2
    assert outcome.schedule.data.absence_cutoff == time(11, 0)


def test_a_repeated_schedule_command_is_a_no_op() -> None:
    schedule = apply_schedule_command(None, SetSchoolSchedule("c-1", schedule_data()), NOW).schedule

    again = apply_schedule_command(schedule, SetSchoolSchedule("c-1", schedule_data()), NOW)

    assert again.replayed is True
    assert again.events == ()
    assert schedule.version == 1


def test_a_schedule_command_id_reused_with_other_data_is_a_conflict() -> None:
    schedule = apply_schedule_command(None, SetSchoolSchedule("c-1", schedule_data()), NOW).schedule
    data = schedule_data()
    other = ScheduleData(data.school_id, "Europe/Moscow", data.weekdays, data.absence_cutoff)

    with pytest.raises(IdempotencyConflict):
        apply_schedule_command(schedule, SetSchoolSchedule("c-1", other), NOW)


def test_an_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        ScheduleData(SCHOOL, "Mars/Olympus", (), time(10, 0))
    assert caught.value.reason is ValidationReason.BAD_TIMEZONE


def test_gate_hours_that_close_before_they_open_are_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        WeekdayHours(0, time(19, 0), time(7, 0), time(8, 30))
    assert caught.value.reason is ValidationReason.BAD_OPENING_HOURS


def test_a_session_that_ends_before_it_starts_is_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        Session("maths", SessionKind.LESSON, 0, time(10, 0), time(9, 0), "5A")
    assert caught.value.reason is ValidationReason.BAD_SESSION


def test_a_weekday_out_of_range_is_rejected() -> None:
    with pytest.raises(InvalidInput) as caught:
        WeekdayHours(7, time(7, 0), time(19, 0), None)
    assert caught.value.reason is ValidationReason.BAD_WEEKDAY


def test_the_school_day_of_an_instant_is_its_local_date() -> None:
    schedule = make_schedule()

    assert schedule.school_day(datetime(2025, 9, 1, 20, 30, tzinfo=UTC)) == MONDAY + timedelta(1)


def test_holidays_and_closed_weekdays_have_no_lessons() -> None:
    schedule = make_schedule()
    saturday = MONDAY + timedelta(days=5)

    assert schedule.has_lessons(MONDAY) is True
    assert schedule.has_lessons(HOLIDAY) is False
    assert schedule.has_lessons(saturday) is False
    assert schedule.is_open(local(saturday, "10:00")) is True


def test_sessions_for_a_class_include_whole_school_ones_and_its_clubs() -> None:
    schedule = make_schedule()
    wednesday = MONDAY + timedelta(days=2)

    assert [s.name for s in schedule.sessions_for(MONDAY, "5A")] == ["assembly", "lessons 5A"]
    assert schedule.last_session_end(wednesday, "5A") == time(16, 0)
    assert schedule.last_session_end(wednesday, "5B") == time(13, 50)


def test_local_times_convert_to_utc_in_the_schools_zone() -> None:
    schedule = make_schedule()

    assert schedule.cutoff_at(MONDAY) == datetime(2025, 9, 1, 6, 0, tzinfo=UTC)


def test_a_vacation_range_becomes_holidays() -> None:
    days = holidays_between(MONDAY, MONDAY + timedelta(days=2), [HOLIDAY])

    assert len(days) == 4


def test_a_schedule_round_trips_through_a_plain_document() -> None:
    schedule = make_schedule()

    assert SchoolSchedule.from_doc(schedule.to_doc()) == schedule
