from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from _access_builders import (
    HOLIDAY,
    MONDAY,
    OTHER_SCHOOL,
    local,
    make_card,
    make_schedule,
    make_tap,
)

from services.access.domain import (
    AttendanceDay,
    CardBlocked,
    CardRecord,
    CardUnblocked,
    Direction,
    GateTap,
    IdempotencyConflict,
    InvalidInput,
    SchoolSchedule,
    StudentEntered,
    StudentExited,
    TapDecided,
    TapOutcome,
    TapReason,
    TapRecord,
    ValidationReason,
    allow_list_entry,
    day_key_for_tap,
    decide_tap,
    entry_verdict,
    project_card,
    validate_tap,
)

pytestmark = pytest.mark.unit

SCHEDULE = make_schedule()


def decide(
    tap: GateTap,
    card: CardRecord | None,
    day: AttendanceDay | None = None,
    previous: TapRecord | None = None,
    schedule: SchoolSchedule | None = SCHEDULE,
) -> TapOutcome:
    return decide_tap(
        tap,
        card=card,
        schedule=schedule,
        day=day,
        previous=previous,
        now=tap.tapped_at + timedelta(seconds=1),
    )


def test_an_active_card_of_the_school_enters_during_opening_hours() -> None:
    card = make_card()
    outcome = decide(make_tap(local(MONDAY, "08:05")), card)

    assert outcome.record.allowed is True
    assert outcome.record.reason is TapReason.OK
    assert outcome.record.contract == "12345678"
    assert outcome.record.day == MONDAY
    assert outcome.day is not None and outcome.day.present
    assert [type(e) for e in outcome.events] == [TapDecided, StudentEntered]


def test_an_unknown_card_is_denied_as_unknown_card() -> None:
    outcome = decide(make_tap(local(MONDAY, "08:05"), card_uid="FFFF"), None)

    assert outcome.record.allowed is False
    assert outcome.record.reason is TapReason.UNKNOWN_CARD
    assert outcome.day is None


def test_a_card_only_ever_seen_blocked_is_denied_as_unknown_card() -> None:
    card = project_card(None, CardBlocked("b-1", "AAAA", local(MONDAY, "07:00"))).card

    outcome = decide(make_tap(local(MONDAY, "08:05"), card_uid="AAAA"), card)

    assert outcome.record.reason is TapReason.UNKNOWN_CARD


def test_a_blocked_card_is_denied_as_card_blocked() -> None:
    card = make_card()
    card.apply(CardBlocked("b-1", card.card_uid, local(MONDAY, "07:00"), "lost"))

    outcome = decide(make_tap(local(MONDAY, "08:05")), card)

    assert outcome.record.allowed is False
    assert outcome.record.reason is TapReason.CARD_BLOCKED
    assert outcome.day is None


def test_a_card_of_another_school_is_denied_as_other_school() -> None:
    card = make_card(school_id=OTHER_SCHOOL)

    outcome = decide(make_tap(local(MONDAY, "08:05")), card)

    assert outcome.record.reason is TapReason.OTHER_SCHOOL


def test_an_entry_before_the_gates_open_is_denied_as_outside_schedule() -> None:
    outcome = decide(make_tap(local(MONDAY, "06:59:59")), make_card())

    assert outcome.record.reason is TapReason.OUTSIDE_SCHEDULE
    assert outcome.day is None


def test_an_entry_at_closing_time_is_denied_as_outside_schedule() -> None:
    outcome = decide(make_tap(local(MONDAY, "19:00")), make_card())

    assert outcome.record.reason is TapReason.OUTSIDE_SCHEDULE


def test_an_entry_on_a_holiday_is_denied_as_outside_schedule() -> None:
    outcome = decide(make_tap(local(HOLIDAY, "09:00")), make_card())

    assert outcome.record.reason is TapReason.OUTSIDE_SCHEDULE


def test_an_entry_on_sunday_is_denied_as_outside_schedule() -> None:
    outcome = decide(make_tap(local(MONDAY + timedelta(days=6), "10:00")), make_card())

    assert outcome.record.reason is TapReason.OUTSIDE_SCHEDULE


def test_a_second_entry_without_an_exit_is_denied_as_anti_passback() -> None:
    card = make_card()
    first = decide(make_tap(local(MONDAY, "08:00")), card)

    second = decide(make_tap(local(MONDAY, "08:01"), gate_id="gate-2"), card, first.day)

    assert second.record.allowed is False
    assert second.record.reason is TapReason.ANTI_PASSBACK
    assert second.day is None
    assert first.day is not None and len(first.day.passages) == 1


def test_an_entry_after_an_exit_is_allowed_again() -> None:
    card = make_card()
    day = decide(make_tap(local(MONDAY, "08:00")), card).day
    decide(make_tap(local(MONDAY, "12:00"), direction=Direction.OUT), card, day)

    back = decide(make_tap(local(MONDAY, "12:30")), card, day)

    assert back.record.allowed is True
    assert day is not None and [p.direction for p in day.passages] == [
        Direction.IN,
        Direction.OUT,
        Direction.IN,
    ]


def test_a_forgotten_exit_yesterday_does_not_block_todays_entry() -> None:
    card = make_card()
    decide(make_tap(local(MONDAY, "08:00")), card)

    tuesday = decide(make_tap(local(MONDAY + timedelta(days=1), "08:00")), card, None)

    assert tuesday.record.allowed is True


def test_a_school_without_a_schedule_denies_as_no_schedule() -> None:
    outcome = decide(make_tap(local(MONDAY, "08:00")), make_card(), schedule=None)

    assert outcome.record.reason is TapReason.NO_SCHEDULE


def test_an_exit_without_an_entry_is_allowed_and_flagged() -> None:
    outcome = decide(make_tap(local(MONDAY, "15:00"), direction=Direction.OUT), make_card())

    assert outcome.record.allowed is True
    exited = [e for e in outcome.events if isinstance(e, StudentExited)]
    assert exited and exited[0].without_entry is True
    assert outcome.day is not None
    assert outcome.day.present is False
    assert outcome.day.exits_without_entry == 1


def test_an_exit_after_the_gates_close_is_allowed_so_nobody_is_locked_in() -> None:
    card = make_card()
    day = decide(make_tap(local(MONDAY, "08:00")), card).day

    late_exit = decide(make_tap(local(MONDAY, "20:30"), direction=Direction.OUT), card, day)

    assert late_exit.record.allowed is True


def test_a_blocked_card_is_denied_on_the_way_out_too() -> None:
    card = make_card()
    card.apply(CardBlocked("b-1", card.card_uid, local(MONDAY, "07:00")))

    outcome = decide(make_tap(local(MONDAY, "14:00"), direction=Direction.OUT), card)

    assert outcome.record.reason is TapReason.CARD_BLOCKED


def test_a_redelivered_tap_gets_the_same_decision_and_records_nothing_again() -> None:
    card = make_card()
    tap = make_tap(local(MONDAY, "08:00"))
    first = decide(tap, card)

    again = decide_tap(
        tap,
        card=card,
        schedule=SCHEDULE,
        day=first.day,
        previous=first.record,
        now=tap.tapped_at + timedelta(minutes=5),
    )

    assert again.replayed is True
    assert again.record == first.record
    assert again.events == ()
    assert again.day is None
    assert first.day is not None and len(first.day.passages) == 1
    assert again.record.decided_event() == first.events[0]


def test_a_redelivered_denied_tap_keeps_its_denial_even_after_the_card_is_unblocked() -> None:
    card = make_card()
    card.apply(CardBlocked("b-1", card.card_uid, local(MONDAY, "07:00")))
    tap = make_tap(local(MONDAY, "08:00"))
    first = decide(tap, card)
    card.apply(CardUnblocked("u-1", card.card_uid, local(MONDAY, "08:00:30")))

    again = decide(tap, card, previous=first.record)

    assert allow_list_entry(card).allowed is True

    assert again.record.reason is TapReason.CARD_BLOCKED


def test_a_redelivered_tap_older_than_the_window_still_returns_its_decision() -> None:
    tap = make_tap(local(MONDAY, "08:00"))
    first = decide(tap, make_card())

    again = decide_tap(
        tap, card=None, schedule=SCHEDULE, day=None, previous=first.record,
        now=tap.tapped_at + timedelta(days=30),
    )

    assert again.record.allowed is True


def test_a_reused_tap_id_with_other_data_is_an_idempotency_conflict() -> None:
    card = make_card()
    tap = make_tap(local(MONDAY, "08:00"), tap_id="t-1")
    first = decide(tap, card)
    other = make_tap(local(MONDAY, "08:00"), tap_id="t-1", gate_id="gate-9")

    with pytest.raises(IdempotencyConflict) as caught:
        decide(other, card, first.day, first.record)
    assert caught.value.reason is ValidationReason.IDEMPOTENCY_CONFLICT


def test_a_tap_within_the_clock_skew_tolerance_is_accepted() -> None:
    tap = make_tap(local(MONDAY, "08:00"))

    assert validate_tap(tap, tap.tapped_at - timedelta(seconds=119)) == tap.tapped_at


def test_a_tap_from_the_future_is_a_validation_error() -> None:
    tap = make_tap(local(MONDAY, "08:00"))

    with pytest.raises(InvalidInput) as caught:
        decide_tap(
            tap, card=make_card(), schedule=SCHEDULE, day=None, previous=None,
            now=tap.tapped_at - timedelta(minutes=3),
        )
    assert caught.value.reason is ValidationReason.FUTURE_TIME


def test_a_tap_older_than_seven_days_is_a_validation_error() -> None:
    tap = make_tap(local(MONDAY, "08:00"))

    with pytest.raises(InvalidInput) as caught:
        validate_tap(tap, tap.tapped_at + timedelta(days=7, seconds=1))
    assert caught.value.reason is ValidationReason.TOO_OLD


def test_a_tap_with_a_naive_time_is_a_validation_error() -> None:
    tap = make_tap(local(MONDAY, "08:00").replace(tzinfo=None))

    with pytest.raises(InvalidInput) as caught:
        validate_tap(tap, local(MONDAY, "08:00"))
    assert caught.value.reason is ValidationReason.NAIVE_TIME


def test_a_tap_with_an_empty_card_uid_is_a_validation_error() -> None:
    tap = make_tap(local(MONDAY, "08:00"), card_uid=" ")

    with pytest.raises(InvalidInput) as caught:
        validate_tap(tap, local(MONDAY, "08:00"))
    assert caught.value.reason is ValidationReason.EMPTY_FIELD


def test_the_day_key_for_a_tap_is_the_contract_and_local_school_day() -> None:
    # 23:30 UTC on Sunday is already Monday 03:30 in Samara (UTC+4).
    tap = make_tap(datetime(2025, 8, 31, 23, 30, tzinfo=UTC))

    assert day_key_for_tap(tap, make_card(), SCHEDULE) == "12345678:2025-09-01"
    assert day_key_for_tap(tap, None, SCHEDULE) is None


def test_the_online_decision_and_the_cached_entry_agree_on_every_card_state() -> None:
    active = make_card(uid="A1")
    blocked = make_card(uid="B1")
    blocked.apply(CardBlocked("b", "B1", local(MONDAY, "07:00")))
    foreign = make_card(uid="C1", school_id=OTHER_SCHOOL)
    unknown = project_card(None, CardBlocked("u", "D1", local(MONDAY, "07:00"))).card

    for card in (active, blocked, foreign, unknown):
        online = decide(make_tap(local(MONDAY, "08:00"), card_uid=card.card_uid), card)
        cached = entry_verdict(allow_list_entry(card), online.record.school_id)
        assert cached is online.record.reason
    assert entry_verdict(None, "any") is TapReason.UNKNOWN_CARD


def test_a_tap_record_round_trips_through_a_plain_document() -> None:
    outcome = decide(make_tap(local(MONDAY, "08:00")), make_card())

    assert TapRecord.from_doc(outcome.record.to_doc()) == outcome.record
