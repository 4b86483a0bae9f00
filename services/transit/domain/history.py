"""Ride history lines for parents: local time, route, stop, mode, fare and a readable reason."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from contracts.money import format_rub
from services.transit.domain.pricing import CapKind, Explanation
from services.transit.domain.rules import FareRulebook, Mode
from services.transit.domain.travel import RideRecord

_EXPLANATIONS: dict[str, dict[Explanation, str]] = {
    "ru": {
        Explanation.FULL_FARE: "полный тариф",
        Explanation.CONCESSION: "льготный тариф",
        Explanation.TRANSFER_FREE: "пересадка, бесплатно",
        Explanation.CAPPED: "достигнут {cap} лимит",
        Explanation.PARTIALLY_CAPPED: "частично, достигнут {cap} лимит",
        Explanation.CORRECTED_LATE_UPLOAD: "исправлено после поздней выгрузки",
    },
    "en": {
        Explanation.FULL_FARE: "full fare",
        Explanation.CONCESSION: "concession fare",
        Explanation.TRANSFER_FREE: "transfer, free",
        Explanation.CAPPED: "{cap} cap reached",
        Explanation.PARTIALLY_CAPPED: "partly charged, {cap} cap reached",
        Explanation.CORRECTED_LATE_UPLOAD: "corrected after a late upload",
    },
}
_CAPS: dict[str, dict[CapKind, str]] = {
    "ru": {CapKind.DAILY: "дневной", CapKind.WEEKLY: "недельный"},
    "en": {CapKind.DAILY: "daily", CapKind.WEEKLY: "weekly"},
}
_MODES: dict[str, dict[Mode, str]] = {
    "ru": {Mode.BUS: "автобус", Mode.TRAM: "трамвай", Mode.TROLLEYBUS: "троллейбус",
           Mode.MINIBUS: "маршрутное такси", Mode.METRO: "метро"},
    "en": {Mode.BUS: "bus", Mode.TRAM: "tram", Mode.TROLLEYBUS: "trolleybus",
           Mode.MINIBUS: "minibus", Mode.METRO: "metro"},
}
_HEADERS: dict[str, tuple[str, ...]] = {
    "ru": ("Дата и время", "Транспорт", "Маршрут", "Остановка", "Стоимость", "Пояснение"),
    "en": ("Date and time", "Mode", "Route", "Stop", "Fare", "Explanation"),
}


@dataclass(frozen=True)
class RideLine:
    """One statement line. ``explanation`` is ``corrected_late_upload`` when the fare changed
    after it was first charged; ``priced_as`` is then the reason of the final fare."""

    ride_id: str
    tapped_at: datetime
    local_time: datetime
    route: str
    stop: str
    mode: Mode
    fare: int
    explanation: Explanation
    priced_as: Explanation
    cap: CapKind | None


def ride_lines(rides: Iterable[RideRecord], rulebook: FareRulebook) -> list[RideLine]:
    return [
        RideLine(
            ride_id=r.ride_id,
            tapped_at=r.tap.tapped_at,
            local_time=rulebook.local(r.tap.tapped_at),
            route=r.tap.route,
            stop=r.tap.stop,
            mode=r.tap.mode,
            fare=r.fare,
            explanation=Explanation.CORRECTED_LATE_UPLOAD if r.corrected else r.explanation,
            priced_as=r.explanation,
            cap=r.cap,
        )
        for r in sorted(rides, key=lambda r: r.tap.order_key)
    ]


def explanation_text(explanation: Explanation, cap: CapKind | None = None,
                     locale: str = "ru") -> str:
    """Human text of one explanation code in ``ru`` (default) or ``en``."""
    texts = _EXPLANATIONS[_locale(locale)]
    cap_word = _CAPS[_locale(locale)][cap or CapKind.DAILY]
    return texts[explanation].format(cap=cap_word)


def line_text(line: RideLine, locale: str = "ru") -> str:
    """The reason shown to a parent; a corrected line also says what the fare is now."""
    text = explanation_text(line.priced_as, line.cap, locale)
    if line.explanation is Explanation.CORRECTED_LATE_UPLOAD:
        return f"{explanation_text(line.explanation, None, locale)}: {text}"
    return text


def render_csv(lines: Iterable[RideLine], locale: str = "ru") -> str:
    """CSV of ride lines with a header row, local times, and amounts formatted for people."""
    loc = _locale(locale)
    out = io.StringIO()
    # Excel in a Russian locale expects ';' between columns (',' is the decimal separator).
    writer = csv.writer(out, delimiter=";" if loc == "ru" else ",", lineterminator="\r\n")
    writer.writerow(_HEADERS[loc])
    for line in lines:
        writer.writerow((
            line.local_time.strftime("%d.%m.%Y %H:%M" if loc == "ru" else "%Y-%m-%d %H:%M"),
            _MODES[loc][line.mode],
            line.route,
            line.stop,
            format_rub(line.fare, locale=loc),
            line_text(line, loc),
        ))
    return out.getvalue()


def _locale(locale: str) -> str:
    return "en" if locale.lower().startswith("en") else "ru"
