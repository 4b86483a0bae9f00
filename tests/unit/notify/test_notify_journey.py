from __future__ import annotations

from datetime import time, timedelta

import pytest

from services.notify.domain import (
    ChildArrivedSafely,
    DeliveryStatus,
    JourneyDay,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    TimelineEntry,
    TimelineKind,
    notification_for,
    route,
)

from .builders import CONTRACT, MSK, guardian, msk

pytestmark = pytest.mark.unit


def school_day() -> JourneyDay:
    return JourneyDay.open(CONTRACT, msk(6, 0), MSK, lesson_start=time(8, 0),
                           grace=timedelta(minutes=15), school="Школа № 5")


def ride(event_id: str = "ride-1", hour: int = 7, minute: int = 41) -> TimelineEntry:
    return TimelineEntry(event_id, TimelineKind.RIDE, msk(hour, minute), "25", 3_500)


def entry(event_id: str = "gate-in", hour: int = 8, minute: int = 2) -> TimelineEntry:
    return TimelineEntry(event_id, TimelineKind.ENTRY, msk(hour, minute), "Школа № 5")


def test_the_timeline_is_ordered_by_event_time_whatever_the_arrival_order() -> None:
    day = school_day()
    day.record(TimelineEntry("exit", TimelineKind.EXIT, msk(14, 10)))
    day.record(TimelineEntry("lunch", TimelineKind.PURCHASE, msk(12, 30), amount=13_500))
    day.record(entry())
    day.record(ride())  # a validator that was offline uploads the morning ride last
    assert [e.event_id for e in day.timeline] == ["ride-1", "gate-in", "lunch", "exit"]


def test_the_first_entry_says_the_child_arrived_safely_with_the_morning_ride() -> None:
    day = school_day()
    day.record(ride())
    (arrived,) = day.record(entry())
    assert isinstance(arrived, ChildArrivedSafely)
    assert (arrived.at, arrived.ride_at, arrived.ride_route) == (msk(8, 2), msk(7, 41), "25")
    assert arrived.event_id == f"journey:{CONTRACT}:2025-09-10:arrived_safely"


def test_arrived_safely_is_raised_once_per_day() -> None:
    day = school_day()
    assert len(day.record(entry("in-1", 8, 2))) == 1
    day.record(TimelineEntry("out", TimelineKind.EXIT, msk(12, 0)))
    assert day.record(entry("in-2", 13, 0)) == []
    assert day.record(entry("in-0", 7, 50)) == []  # an earlier entry uploaded late


def test_recording_the_same_event_twice_is_a_no_op() -> None:
    day = school_day()
    day.record(ride())
    version = day.version
    assert day.record(ride()) == []
    assert (len(day.timeline), day.version) == (1, version)


def test_the_same_event_id_with_other_content_is_a_conflict() -> None:
    day = school_day()
    day.record(ride())
    with pytest.raises(NotifyError) as err:
        day.record(ride(minute=42))
    assert err.value.reason is NotifyRejection.EVENT_CONFLICT


def test_an_event_of_another_local_day_is_refused() -> None:
    day = school_day()
    with pytest.raises(NotifyError) as err:
        day.record(TimelineEntry("late-night", TimelineKind.RIDE, msk(0, 30, day=11)))
    assert err.value.reason is NotifyRejection.WRONG_DAY


def test_a_morning_ride_without_entry_raises_the_alert_after_lessons_start_plus_grace() -> None:
    day = school_day()
    day.record(ride())
    assert day.check_not_arrived(msk(8, 14)) is None
    alert = day.check_not_arrived(msk(8, 15))
    assert alert is not None
    assert (alert.last_ride_at, alert.route, alert.lesson_start) == (msk(7, 41), "25", msk(8, 0))


def test_the_not_arrived_alert_is_raised_at_most_once_per_day() -> None:
    day = school_day()
    day.record(ride())
    assert day.check_not_arrived(msk(8, 15)) is not None
    assert day.check_not_arrived(msk(8, 20)) is None
    assert day.check_not_arrived(msk(9, 0)) is None


def test_the_alert_survives_a_reload_so_a_restart_does_not_repeat_it() -> None:
    day = school_day()
    day.record(ride())
    day.check_not_arrived(msk(8, 15))
    reloaded = JourneyDay.from_doc(day.to_doc())
    assert reloaded.check_not_arrived(msk(8, 30)) is None


def test_no_alert_when_the_child_entered_or_did_not_ride_or_it_is_a_day_off() -> None:
    entered_day = school_day()
    entered_day.record(ride())
    entered_day.record(entry())
    walked = school_day()
    day_off = JourneyDay.open(CONTRACT, msk(6, 0), MSK, lesson_start=None)
    day_off.record(ride())
    afternoon_ride_only = school_day()
    afternoon_ride_only.record(ride("ride-pm", 15, 0))
    for day in (entered_day, walked, day_off, afternoon_ride_only):
        assert day.check_not_arrived(msk(9, 0)) is None


def test_a_tick_on_the_next_day_raises_no_stale_alert() -> None:
    day = school_day()
    day.record(ride())
    assert day.check_not_arrived(msk(8, 30, day=11)) is None


def test_arrival_after_the_alert_still_tells_the_parent_the_child_is_safe() -> None:
    day = school_day()
    day.record(ride())
    day.check_not_arrived(msk(8, 15))
    assert len(day.record(entry(hour=8, minute=40))) == 1


def test_journey_events_become_notifications_routed_once_per_guardian() -> None:
    day = school_day()
    day.record(ride())
    alert = day.check_not_arrived(msk(8, 15))
    assert alert is not None
    event = notification_for(alert)
    assert event.kind is NotificationKind.NOT_ARRIVED_ALERT and event.contract == CONTRACT
    (push,) = route(event, [guardian()], msk(8, 15)).messages
    assert push.status is DeliveryStatus.PENDING and push.is_due(msk(8, 15))
    assert "к началу уроков (08:00)" in push.body
    (arrived,) = day.record(entry(hour=8, minute=40))
    assert notification_for(arrived).kind is NotificationKind.ARRIVED_SAFELY


def test_a_journey_day_round_trips_through_a_plain_document() -> None:
    day = school_day()
    day.record(ride())
    day.record(entry())
    doc = day.to_doc()
    assert JourneyDay.from_doc(doc).to_doc() == doc
    assert doc["key"] == f"{CONTRACT}:2025-09-10"


def test_lessons_beginning_without_the_child_who_rode_raise_the_alert_once() -> None:
    day = JourneyDay.open(CONTRACT, msk(6, 0), MSK)  # notify learns the lesson start from access
    day.record(ride())

    alert = day.lessons_began_without_entry(time(8, 0), "Школа № 5")
    again = day.lessons_began_without_entry(time(8, 0), "Школа № 5")

    assert alert is not None and again is None
    assert alert.lesson_start == msk(8, 0) and alert.last_ride_at == msk(7, 41)
    assert alert.event_id == f"journey:{CONTRACT}:{day.day.isoformat()}:not_arrived"
    assert notification_for(alert).kind is NotificationKind.NOT_ARRIVED_ALERT


def test_no_alert_at_lesson_start_once_an_entry_is_known_or_without_a_morning_ride() -> None:
    entered = JourneyDay.open(CONTRACT, msk(6, 0), MSK)
    entered.record(ride())
    entered.record(entry(hour=8, minute=20))  # late, but uploaded before access's news came
    walked = JourneyDay.open(CONTRACT, msk(6, 0), MSK)
    walked.record(TimelineEntry("lunch", TimelineKind.PURCHASE, msk(12, 0), amount=14_500))
    after_lessons = JourneyDay.open(CONTRACT, msk(6, 0), MSK)
    after_lessons.record(ride(hour=9, minute=5))  # rode after lessons began: not toward them

    for day in (entered, walked, after_lessons):
        assert day.lessons_began_without_entry(time(8, 0), "Школа № 5") is None


def test_a_morning_ride_uploaded_after_lessons_began_without_the_child_raises_the_alert() -> None:
    day = JourneyDay.open(CONTRACT, msk(6, 0), MSK)
    assert day.lessons_began_without_entry(time(8, 0), "Школа № 5") is None  # no ride known

    after_start = day.record(ride("ride-late", hour=9, minute=10))
    offline = day.record(ride("ride-offline"))  # 07:41, uploaded by an offline validator
    again = day.record(ride("ride-other", hour=7, minute=50))

    assert after_start == []
    assert len(offline) == 1 and offline[0].last_ride_at == msk(7, 41)
    assert again == []
    assert JourneyDay.from_doc(day.to_doc()).missing_at_start
