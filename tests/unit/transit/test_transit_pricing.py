from datetime import date

import pytest
from _transit_builders import CONCESSION, FULL, rulebook, tap

from services.transit.domain import (
    CapKind,
    ConcessionEligibility,
    Explanation,
    Tap,
    concession_reminder_due,
    price_taps,
)

pytestmark = pytest.mark.unit

F = Explanation.FULL_FARE
T = Explanation.TRANSFER_FREE
C = Explanation.CAPPED
P = Explanation.PARTIALLY_CAPPED
CON = Explanation.CONCESSION


def _fares(taps: list[Tap], **rules: object) -> list[tuple[int, Explanation]]:
    priced = price_taps(taps, rulebook(**rules), None)  # type: ignore[arg-type]
    return [(p.fare, p.explanation) for p in priced]


@pytest.mark.parametrize(
    ("second_at", "second_route", "rules", "expected"),
    [
        ("08:30", "7", {}, (0, T)),
        ("09:00", "7", {}, (0, T)),  # the window is inclusive
        ("09:01", "7", {}, (FULL, F)),
        ("08:30", "12", {}, (FULL, F)),  # boarding the same route again is a new journey
        ("08:30", "12", {"same_route": True}, (0, T)),
        ("09:20", "7", {"window": 90}, (0, T)),
        ("08:30", "7", {"max_transfers": 0}, (FULL, F)),
    ],
)
def test_a_second_ride_is_a_free_transfer_only_inside_the_window(
    second_at: str, second_route: str, rules: dict[str, object],
    expected: tuple[int, Explanation],
) -> None:
    taps = [tap("a", "2026-03-02 08:00", "12"), tap("b", f"2026-03-02 {second_at}", second_route)]

    assert _fares(taps, **rules) == [(FULL, F), expected]


@pytest.mark.parametrize(
    ("max_transfers", "expected_third"),
    [(1, (FULL, F)), (2, (0, T)), (None, (0, T))],
)
def test_the_number_of_transfers_in_one_journey_is_limited_by_the_rules(
    max_transfers: int | None, expected_third: tuple[int, Explanation]
) -> None:
    taps = [tap("a", "2026-03-02 08:00", "1"), tap("b", "2026-03-02 08:20", "2"),
            tap("c", "2026-03-02 08:40", "3")]

    assert _fares(taps, max_transfers=max_transfers) == [(FULL, F), (0, T), expected_third]


def test_the_transfer_window_counts_from_the_paid_ride_not_from_the_last_transfer() -> None:
    taps = [tap("a", "2026-03-02 08:00", "1"), tap("b", "2026-03-02 08:50", "2"),
            tap("c", "2026-03-02 09:30", "3")]

    assert _fares(taps, max_transfers=None) == [(FULL, F), (0, T), (FULL, F)]


@pytest.mark.parametrize(
    ("daily", "expected"),
    [
        (10_000, [(FULL, F), (FULL, F), (3000, P), (0, C)]),
        (7_000, [(FULL, F), (FULL, F), (0, C), (0, C)]),
        (20_000, [(FULL, F), (FULL, F), (FULL, F), (FULL, F)]),
    ],
)
def test_the_daily_cap_is_reached_mid_day(
    daily: int, expected: list[tuple[int, Explanation]]
) -> None:
    taps = [tap(str(h), f"2026-03-02 {h:02d}:00") for h in (8, 10, 12, 14)]

    priced = price_taps(taps, rulebook(daily=daily), None)

    assert [(p.fare, p.explanation) for p in priced] == expected
    assert all(p.cap in (None, CapKind.DAILY) for p in priced)
    assert sum(p.fare for p in priced) == min(daily, 4 * FULL)


@pytest.mark.parametrize(
    ("weekly", "days_charged_in_full", "partial_day_fare"),
    [(14_000, 4, None), (12_000, 3, 1500), (100_000, 7, None)],
)
def test_the_weekly_cap_limits_what_a_monday_to_sunday_week_costs(
    weekly: int, days_charged_in_full: int, partial_day_fare: int | None
) -> None:
    taps = [tap(f"d{d}", f"2026-03-0{d} 08:00") for d in range(2, 9)]  # Monday .. Sunday

    priced = price_taps(taps, rulebook(weekly=weekly), None)

    fares = [p.fare for p in priced]
    assert fares[:days_charged_in_full] == [FULL] * days_charged_in_full
    if partial_day_fare is not None:
        assert priced[days_charged_in_full].explanation is P
        assert fares[days_charged_in_full] == partial_day_fare
    assert sum(fares) == min(weekly, 7 * FULL)
    assert all(p.cap in (None, CapKind.WEEKLY) for p in priced)


def test_the_weekly_cap_starts_again_on_monday_in_the_city_time_zone() -> None:
    taps = [tap("sun", "2026-03-08 08:00"), tap("sun2", "2026-03-08 23:50", "7"),
            tap("mon", "2026-03-09 00:10", "9")]

    priced = price_taps(taps, rulebook(weekly=3500, window=60), None)

    # 00:10 Monday is inside the Sunday journey's window, but a journey never crosses the week.
    assert [(p.fare, p.explanation, p.cap) for p in priced] == [
        (FULL, F, None), (0, C, CapKind.WEEKLY), (FULL, F, None)
    ]


@pytest.mark.parametrize(
    ("valid_until", "tapped", "expected"),
    [
        (date(2026, 3, 2), "2026-03-02 08:00", (CONCESSION, CON)),
        (date(2026, 3, 2), "2026-03-02 23:59", (CONCESSION, CON)),
        # 00:10 local on the 3rd is still the 2nd in UTC: expiry follows the city's calendar
        (date(2026, 3, 2), "2026-03-03 00:10", (FULL, F)),
        (date(2026, 2, 28), "2026-03-02 08:00", (FULL, F)),
    ],
)
def test_an_expired_concession_gives_way_to_the_full_fare(
    valid_until: date, tapped: str, expected: tuple[int, Explanation]
) -> None:
    priced = price_taps([tap("a", tapped)], rulebook(), ConcessionEligibility(valid_until))

    assert (priced[0].fare, priced[0].explanation) == expected


def test_a_concession_that_has_not_started_yet_gives_the_full_fare() -> None:
    eligibility = ConcessionEligibility(date(2026, 6, 30), valid_from=date(2026, 3, 3))

    priced = price_taps([tap("a", "2026-03-02 08:00"), tap("b", "2026-03-03 08:00")],
                        rulebook(), eligibility)

    assert [p.explanation for p in priced] == [F, CON]


@pytest.mark.parametrize(
    ("first", "second", "second_fare"),
    [
        # 23:30 and 00:30 local are 19:30 and 20:30 UTC of the same UTC day: the cap must not
        # treat them as one day.
        ("2026-03-02 23:30", "2026-03-03 00:30", FULL),
        ("2026-03-02 00:10", "2026-03-02 23:50", 0),
        ("2026-03-01 23:59", "2026-03-02 00:01", FULL),  # Sunday -> Monday, also a new week
    ],
)
def test_the_daily_cap_rolls_over_at_midnight_in_the_city_time_zone(
    first: str, second: str, second_fare: int
) -> None:
    taps = [tap("a", first, "1"), tap("b", second, "1")]

    priced = price_taps(taps, rulebook(daily=FULL, window=0), None)

    assert [p.fare for p in priced] == [FULL, second_fare]


def test_a_transfer_may_continue_across_midnight_within_the_week() -> None:
    taps = [tap("a", "2026-03-02 23:40", "1"), tap("b", "2026-03-03 00:20", "2")]

    priced = price_taps(taps, rulebook(), None)

    assert [(p.fare, p.explanation, p.local_day) for p in priced] == [
        (FULL, F, date(2026, 3, 2)), (0, T, date(2026, 3, 3))
    ]


def test_the_rules_version_follows_the_local_date_of_each_tap() -> None:
    newer = {
        "version": "v2", "effective_from": "2026-03-03",
        "fares": {"bus": {"full": 4000, "concession": 2000}},
        "transfer": {"window_minutes": 60, "max_transfers": 1, "same_route": False},
        "caps": {"daily": None, "weekly": None},
    }
    taps = [tap("a", "2026-03-02 23:00"), tap("b", "2026-03-03 02:00")]

    priced = price_taps(taps, rulebook(extra_versions=[newer]), None)

    assert [(p.fare, p.rules_version) for p in priced] == [(FULL, "v1"), (4000, "v2")]


def test_taps_are_priced_in_tap_time_order_whatever_order_they_are_given_in() -> None:
    taps = [tap("c", "2026-03-02 12:00", "3"), tap("a", "2026-03-02 08:00", "1"),
            tap("b", "2026-03-02 08:30", "2")]

    priced = price_taps(taps, rulebook(), None)

    assert [(p.tap.tap_id, p.fare) for p in priced] == [("a", FULL), ("b", 0), ("c", FULL)]


@pytest.mark.parametrize(
    ("today", "reminded_for", "due"),
    [
        (date(2026, 5, 23), None, False),
        (date(2026, 5, 24), None, True),
        (date(2026, 5, 31), None, True),
        (date(2026, 6, 1), None, False),
        (date(2026, 5, 28), date(2026, 5, 31), False),
        (date(2026, 5, 28), date(2025, 5, 31), True),
    ],
)
def test_the_concession_reminder_is_due_in_the_last_days_before_expiry_once(
    today: date, reminded_for: date | None, due: bool
) -> None:
    eligibility = ConcessionEligibility(date(2026, 5, 31))

    assert concession_reminder_due(eligibility, today, 7, reminded_for) is due


def test_no_reminder_is_due_for_a_card_without_a_concession() -> None:
    assert concession_reminder_due(None, date(2026, 5, 31), 7) is False
