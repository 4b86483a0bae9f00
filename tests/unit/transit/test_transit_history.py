import csv
import io

import pytest
from _transit_builders import CARD, FULL, OPERATOR, local, rulebook, tap

from services.transit.domain import (
    CapKind,
    CardTravel,
    Explanation,
    Mode,
    explanation_text,
    render_csv,
    ride_lines,
)

pytestmark = pytest.mark.unit

NOW = local("2026-03-09 12:00")


def _day_with_a_late_upload() -> CardTravel:
    travel = CardTravel(card_uid=CARD, operator_id=OPERATOR)
    rules = rulebook(daily=2 * FULL)
    travel.record_tap(tap("b", "2026-03-02 08:30", "7", stop="School No. 5"), rules, NOW)
    travel.record_tap(tap("a", "2026-03-02 08:00", "12", stop="Home"), rules, NOW)
    travel.record_tap(tap("c", "2026-03-02 14:00", "12", stop="School No. 5"), rules, NOW)
    travel.record_tap(tap("d", "2026-03-02 18:00", "3", mode="tram", stop="Pool"), rules, NOW)
    return travel


@pytest.mark.parametrize(
    ("explanation", "cap", "locale", "text"),
    [
        (Explanation.FULL_FARE, None, "ru", "полный тариф"),
        (Explanation.CONCESSION, None, "ru", "льготный тариф"),
        (Explanation.TRANSFER_FREE, None, "ru", "пересадка, бесплатно"),
        (Explanation.CAPPED, CapKind.DAILY, "ru", "достигнут дневной лимит"),
        (Explanation.CAPPED, CapKind.WEEKLY, "ru", "достигнут недельный лимит"),
        (Explanation.CORRECTED_LATE_UPLOAD, None, "ru", "исправлено после поздней выгрузки"),
        (Explanation.FULL_FARE, None, "en", "full fare"),
        (Explanation.TRANSFER_FREE, None, "en-GB", "transfer, free"),
        (Explanation.PARTIALLY_CAPPED, CapKind.WEEKLY, "en", "partly charged, weekly cap reached"),
        (Explanation.CORRECTED_LATE_UPLOAD, None, "en", "corrected after a late upload"),
    ],
)
def test_every_explanation_has_a_text_for_parents(
    explanation: Explanation, cap: CapKind | None, locale: str, text: str
) -> None:
    assert explanation_text(explanation, cap, locale) == text


def test_history_lines_are_in_tap_order_in_local_time_with_corrections_marked() -> None:
    travel = _day_with_a_late_upload()

    lines = ride_lines(travel.rides_between(local("2026-03-02 00:00"),
                                            local("2026-03-03 00:00")), rulebook())

    assert [line.ride_id for line in lines] == ["a", "b", "c", "d"]
    assert lines[0].local_time.strftime("%H:%M") == "08:00"
    assert [(line.fare, line.explanation) for line in lines] == [
        (FULL, Explanation.FULL_FARE),
        (0, Explanation.CORRECTED_LATE_UPLOAD),
        (FULL, Explanation.FULL_FARE),
        (0, Explanation.CAPPED),
    ]
    assert lines[1].priced_as is Explanation.TRANSFER_FREE
    assert lines[3].mode is Mode.TRAM


def test_the_history_period_excludes_rides_outside_it() -> None:
    travel = _day_with_a_late_upload()

    rides = travel.rides_between(local("2026-03-02 08:15"), local("2026-03-02 18:00"))

    assert [r.ride_id for r in rides] == ["b", "c"]


def test_the_russian_csv_has_a_header_local_times_roubles_and_reasons() -> None:
    travel = _day_with_a_late_upload()

    text = render_csv(ride_lines(travel.rides.values(), rulebook()))

    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == ["Дата и время", "Транспорт", "Маршрут", "Остановка", "Стоимость",
                       "Пояснение"]
    assert rows[1] == ["02.03.2026 08:00", "автобус", "12", "Home", "35,00\u00a0₽",
                       "полный тариф"]
    assert rows[2][5] == "исправлено после поздней выгрузки: пересадка, бесплатно"
    assert rows[4][1:] == ["трамвай", "3", "Pool", "0,00\u00a0₽", "достигнут дневной лимит"]


def test_the_english_csv_uses_commas_and_english_texts() -> None:
    travel = _day_with_a_late_upload()

    text = render_csv(ride_lines(travel.rides.values(), rulebook()), locale="en")

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "Date and time"
    assert rows[1] == ["2026-03-02 08:00", "bus", "12", "Home", "RUB\u00a035.00", "full fare"]
    assert rows[2][5] == "corrected after a late upload: transfer, free"


def test_a_csv_of_no_rides_is_just_the_header() -> None:
    assert render_csv([], locale="ru").count("\r\n") == 1
