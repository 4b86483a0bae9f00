"""Builders for transit unit tests: a rulebook from keyword arguments and taps in local time."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.transit.domain import FareRulebook, Mode, Tap

CITY_TZ = "Europe/Samara"  # UTC+4 all year: local midnight is 20:00 UTC the day before
OPERATOR = "izhevsk-gortrans"
CARD = "04A1B2C3D4E5F6"
FULL = 3500
CONCESSION = 1750


def rulebook(
    *,
    window: int = 60,
    max_transfers: int | None = 1,
    same_route: bool = False,
    daily: int | None = None,
    weekly: int | None = None,
    late_upload_days: int = 14,
    reminder_days: int = 7,
    extra_versions: list[dict[str, Any]] | None = None,
) -> FareRulebook:
    fares = {m: {"full": FULL, "concession": CONCESSION} for m in ("bus", "tram", "trolleybus")}
    fares["minibus"] = {"full": 4000, "concession": 4000}
    version = {
        "version": "v1",
        "effective_from": "2026-01-01",
        "fares": fares,
        "transfer": {"window_minutes": window, "max_transfers": max_transfers,
                     "same_route": same_route},
        "caps": {"daily": daily, "weekly": weekly},
    }
    return FareRulebook.from_doc({
        "operator_id": OPERATOR,
        "city": "Izhevsk",
        "time_zone": CITY_TZ,
        "late_upload_days": late_upload_days,
        "concession_reminder_days": reminder_days,
        "versions": [version, *(extra_versions or [])],
    })


def local(text: str) -> datetime:
    """``"2026-03-02 08:00"`` in the city's time zone (2026-03-02 is a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(CITY_TZ))


def tap(tap_id: str, when: str, route: str = "12", mode: str = "bus", *,
        card: str = CARD, offline: bool = False, stop: str = "Central Square") -> Tap:
    return Tap(
        tap_id=tap_id,
        validator_id=f"val-{route}",
        vehicle_id=f"veh-{route}",
        route=route,
        mode=Mode(mode),
        stop=stop,
        card_uid=card,
        tapped_at=local(when),
        offline=offline,
    )
