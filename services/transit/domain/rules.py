"""Fare rules as data: one rulebook per operator/city, with dated versions.

A rulebook is parsed from a plain dict (the JSON file ``services/transit/fare_rules.json`` or a
MongoDB document) and validated up front, so that a broken rules file fails at start-up and never
half-way through pricing a week.

Time zones: every "daily" and "weekly" notion (which day a ride belongs to, which version of the
rules applies, the Monday-to-Monday week of the weekly cap) is taken in the city's IANA time zone.
Instants are stored and compared in UTC.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

RULES_SCHEMA_VERSION = 1
MAX_FARE = 100_000  # 1 000 RUB for a single ride: anything above is a typo in the rules file
MAX_TRANSFER_WINDOW_MINUTES = 24 * 60


class Mode(StrEnum):
    BUS = "bus"
    TRAM = "tram"
    TROLLEYBUS = "trolleybus"
    MINIBUS = "minibus"
    METRO = "metro"


class FareRulesError(ValueError):
    """The rules document is invalid; ``path`` points at the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class ModeFare:
    """Fares of one mode in kopecks: the full fare and the student concession fare."""

    full: int
    concession: int


@dataclass(frozen=True)
class FareRulesVersion:
    """One dated version of an operator's fares.

    ``transfer_window``: a ride that starts within this time (inclusive) after the ride that
    started the journey is a free transfer. ``max_transfers``: how many free transfers one
    journey allows (``None`` = unlimited). ``same_route_transfer``: whether boarding the same
    route again counts as a transfer. Caps are in kopecks of what the card pays (``None`` = no cap).
    """

    version: str
    effective_from: date
    fares: Mapping[Mode, ModeFare]
    transfer_window: timedelta
    max_transfers: int | None
    same_route_transfer: bool
    daily_cap: int | None
    weekly_cap: int | None

    def fare_for(self, mode: Mode) -> ModeFare | None:
        return self.fares.get(mode)


@dataclass(frozen=True)
class FareRulebook:
    """All versions of one operator's rules in one city time zone.

    ``late_upload_days``: how long after a week has ended a late (offline) tap of that week is
    still accepted and repriced; older weeks are closed. ``concession_reminder_days``: how many
    days before a concession expires the reminder is due.
    """

    operator_id: str
    city: str
    time_zone: str
    versions: tuple[FareRulesVersion, ...]
    late_upload_days: int
    concession_reminder_days: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def local_day(self, instant: datetime) -> date:
        return self.local(instant).date()

    def week_of(self, instant: datetime) -> date:
        """The Monday (a local date) of the week the instant falls in."""
        day = self.local_day(instant)
        return day - timedelta(days=day.weekday())

    def start_of_day(self, day: date) -> datetime:
        """The instant of local midnight starting ``day`` (zone-aware, DST-safe via zoneinfo)."""
        return datetime.combine(day, time(0), tzinfo=self.tz)

    def week_end(self, week: date) -> datetime:
        return self.start_of_day(week + timedelta(days=7))

    def version_on(self, day: date) -> FareRulesVersion | None:
        """The version in force on a local date: the latest one effective on or before it."""
        chosen: FareRulesVersion | None = None
        for version in self.versions:
            if version.effective_from <= day:
                chosen = version
        return chosen

    def to_doc(self) -> dict[str, Any]:
        return {
            "operator_id": self.operator_id,
            "city": self.city,
            "time_zone": self.time_zone,
            "late_upload_days": self.late_upload_days,
            "concession_reminder_days": self.concession_reminder_days,
            "versions": [
                {
                    "version": v.version,
                    "effective_from": v.effective_from.isoformat(),
                    "fares": {
                        mode.value: {"full": fare.full, "concession": fare.concession}
                        for mode, fare in v.fares.items()
                    },
                    "transfer": {
                        "window_minutes": int(v.transfer_window.total_seconds()) // 60,
                        "max_transfers": v.max_transfers,
                        "same_route": v.same_route_transfer,
                    },
                    "caps": {"daily": v.daily_cap, "weekly": v.weekly_cap},
                }
                for v in self.versions
            ],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], path: str = "operator") -> FareRulebook:
        """Parse and validate one operator's rules; raise :class:`FareRulesError` if invalid."""
        reader = _Reader(doc, path)
        operator_id = reader.text("operator_id")
        city = reader.text("city")
        zone = reader.text("time_zone")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise FareRulesError(f"{path}.time_zone", f"unknown IANA time zone {zone!r}") from None
        late_days = reader.integer("late_upload_days", low=0, high=366)
        reminder_days = reader.integer("concession_reminder_days", low=0, high=366)
        raw_versions = reader.items("versions")
        if not raw_versions:
            raise FareRulesError(f"{path}.versions", "at least one version is required")
        versions = tuple(
            _parse_version(raw, f"{path}.versions[{i}]") for i, raw in enumerate(raw_versions)
        )
        for earlier, later in itertools.pairwise(versions):
            if later.effective_from <= earlier.effective_from:
                raise FareRulesError(
                    f"{path}.versions", "versions must be ordered by strictly increasing "
                    "effective_from"
                )
        if len({v.version for v in versions}) != len(versions):
            raise FareRulesError(f"{path}.versions", "version names must be unique")
        return cls(operator_id, city, zone, versions, late_days, reminder_days)


def parse_fare_rules(doc: Mapping[str, Any]) -> dict[str, FareRulebook]:
    """Parse a whole rules file: ``{"schema_version": 1, "operators": [...]}`` -> by operator id."""
    reader = _Reader(doc, "rules")
    schema = reader.integer("schema_version", low=1, high=RULES_SCHEMA_VERSION)
    if schema != RULES_SCHEMA_VERSION:  # pragma: no cover - guarded by the bounds above
        raise FareRulesError("rules.schema_version", f"unsupported schema {schema}")
    books: dict[str, FareRulebook] = {}
    for i, raw in enumerate(reader.items("operators")):
        book = FareRulebook.from_doc(raw, f"rules.operators[{i}]")
        if book.operator_id in books:
            raise FareRulesError(
                f"rules.operators[{i}].operator_id", f"duplicate operator {book.operator_id!r}"
            )
        books[book.operator_id] = book
    return books


def _parse_version(raw: Mapping[str, Any], path: str) -> FareRulesVersion:
    reader = _Reader(raw, path)
    name = reader.text("version")
    try:
        effective = date.fromisoformat(reader.text("effective_from"))
    except ValueError:
        raise FareRulesError(f"{path}.effective_from", "not an ISO date (YYYY-MM-DD)") from None
    fares_raw = reader.mapping("fares")
    if not fares_raw:
        raise FareRulesError(f"{path}.fares", "at least one mode is required")
    fares: dict[Mode, ModeFare] = {}
    for key, value in fares_raw.items():
        try:
            mode = Mode(key)
        except ValueError:
            raise FareRulesError(
                f"{path}.fares", f"unknown mode {key!r}; expected one of {[m.value for m in Mode]}"
            ) from None
        if not isinstance(value, Mapping):
            raise FareRulesError(f"{path}.fares.{key}", "must be an object")
        fare_reader = _Reader(value, f"{path}.fares.{key}")
        full = fare_reader.integer("full", low=0, high=MAX_FARE)
        concession = fare_reader.integer("concession", low=0, high=MAX_FARE)
        if concession > full:
            raise FareRulesError(f"{path}.fares.{key}.concession", "exceeds the full fare")
        fares[mode] = ModeFare(full, concession)
    transfer = _Reader(reader.mapping("transfer"), f"{path}.transfer")
    window = transfer.integer("window_minutes", low=0, high=MAX_TRANSFER_WINDOW_MINUTES)
    max_transfers = transfer.optional_integer("max_transfers", low=0, high=100)
    same_route = transfer.boolean("same_route")
    caps = _Reader(reader.mapping("caps"), f"{path}.caps")
    daily = caps.optional_integer("daily", low=1, high=MAX_FARE * 100)
    weekly = caps.optional_integer("weekly", low=1, high=MAX_FARE * 700)
    if daily is not None and weekly is not None and weekly < daily:
        raise FareRulesError(f"{path}.caps.weekly", "is below the daily cap")
    return FareRulesVersion(
        version=name,
        effective_from=effective,
        fares=fares,
        transfer_window=timedelta(minutes=window),
        max_transfers=max_transfers,
        same_route_transfer=same_route,
        daily_cap=daily,
        weekly_cap=weekly,
    )


class _Reader:
    """Typed access to one JSON object with error messages that carry the field path."""

    def __init__(self, doc: Mapping[str, Any], path: str) -> None:
        if not isinstance(doc, Mapping):
            raise FareRulesError(path, "must be an object")
        self._doc = doc
        self._path = path

    def _get(self, key: str) -> Any:
        if key not in self._doc:
            raise FareRulesError(f"{self._path}.{key}", "is required")
        return self._doc[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise FareRulesError(f"{self._path}.{key}", "must be a non-empty string")
        return value

    def integer(self, key: str, *, low: int, high: int) -> int:
        value = self._get(key)
        # bool is an int in Python; a JSON true where kopecks are expected is a typo.
        if not isinstance(value, int) or isinstance(value, bool):
            raise FareRulesError(f"{self._path}.{key}", "must be an integer")
        if not low <= value <= high:
            raise FareRulesError(f"{self._path}.{key}", f"must be between {low} and {high}")
        return value

    def optional_integer(self, key: str, *, low: int, high: int) -> int | None:
        if self._doc.get(key) is None:
            return None
        return self.integer(key, low=low, high=high)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise FareRulesError(f"{self._path}.{key}", "must be true or false")
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise FareRulesError(f"{self._path}.{key}", "must be an object")
        return value

    def items(self, key: str) -> list[Mapping[str, Any]]:
        value = self._get(key)
        if not isinstance(value, list):
            raise FareRulesError(f"{self._path}.{key}", "must be a list")
        return value


def rules_update_refusal(
    stored: tuple[int, str] | None, version: int, digest: str
) -> tuple[str, str] | None:
    """Whether an operator admin's rules version may replace the stored one.

    ``stored`` is (version, content digest) of the rules set by an earlier command (None: only
    the rules file so far). The same version with the same content is an idempotent repeat;
    returns None when accepted, else (code, reason).
    """
    if stored is None:
        return None
    current, current_digest = stored
    if version < current:
        return "stale_version", f"version {version} is older than the current {current}"
    if version == current and digest != current_digest:
        return "version_conflict", f"version {version} was already set with other rules"
    return None
