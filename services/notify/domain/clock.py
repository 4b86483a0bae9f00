"""Time helpers: every instant is timezone-aware UTC inside the domain and in documents."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import NotifyError, NotifyRejection


def require_aware(value: datetime, what: str = "datetime") -> datetime:
    """Return ``value`` in UTC; a naive datetime is a programming error, refused loudly."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise NotifyError(NotifyRejection.NAIVE_DATETIME, what)
    return value.astimezone(UTC)


def from_doc_datetime(value: datetime) -> datetime:
    """Read a datetime from a BSON document.

    PyMongo returns naive datetimes (implicitly UTC) unless the client is ``tz_aware``; both are
    accepted so the store's client setting cannot silently shift times.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_from_doc_datetime(value: datetime | None) -> datetime | None:
    return None if value is None else from_doc_datetime(value)


def zone(name: str) -> ZoneInfo:
    """Resolve an IANA time zone name, refusing unknown ones with a reason code."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise NotifyError(NotifyRejection.INVALID_TIME_ZONE, name) from exc


def local_datetime(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a local day (first occurrence if ambiguous)."""
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


def parse_hhmm(text: str) -> time:
    hours, sep, minutes = text.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise NotifyError(NotifyRejection.INVALID_QUIET_HOURS, text)
    try:
        return time(int(hours), int(minutes))
    except ValueError as exc:
        raise NotifyError(NotifyRejection.INVALID_QUIET_HOURS, text) from exc


def format_hhmm(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"
