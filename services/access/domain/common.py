"""Shared vocabulary of the access domain: reason codes, errors and BSON-friendly conversions.

Everything stored goes through the helpers here so that the documents hold only str, int, bool,
None, timezone-aware UTC datetimes, lists and dicts: calendar dates become ``"YYYY-MM-DD"`` and
times of day become ``"HH:MM"`` (or ``"HH:MM:SS"`` when seconds matter).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

Doc = dict[str, Any]


class Direction(StrEnum):
    """Which way a person passes the turnstile."""

    IN = "in"
    OUT = "out"


class TapReason(StrEnum):
    """Why a gate tap was allowed or denied; ``ok`` is the only allowing reason."""

    OK = "ok"
    UNKNOWN_CARD = "unknown_card"
    CARD_BLOCKED = "card_blocked"
    OTHER_SCHOOL = "other_school"
    NO_SCHEDULE = "no_schedule"
    OUTSIDE_SCHEDULE = "outside_schedule"
    ANTI_PASSBACK = "anti_passback"


class ValidationReason(StrEnum):
    """Why an input cannot be processed at all (the handler dead-letters it)."""

    NAIVE_TIME = "naive_time"
    FUTURE_TIME = "future_time"
    TOO_OLD = "too_old"
    EMPTY_FIELD = "empty_field"
    BAD_TIMEZONE = "bad_timezone"
    BAD_OPENING_HOURS = "bad_opening_hours"
    BAD_SESSION = "bad_session"
    BAD_WEEKDAY = "bad_weekday"
    UNKNOWN_STUDENT = "unknown_student"
    OTHER_SCHOOL = "other_school"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    SAME_CONTRACT = "same_contract"
    INVALID_PERIOD = "invalid_period"
    CREDENTIAL_CONFLICT = "credential_conflict"
    UNKNOWN_CREDENTIAL = "unknown_credential"


class AccessDomainError(Exception):
    """Base of every explicit rejection raised by the access domain (``reason`` is a code)."""

    def __init__(self, reason: ValidationReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidInput(AccessDomainError):
    """The message is malformed or impossible (future or ancient time, bad schedule data)."""


class IdempotencyConflict(AccessDomainError):
    """The same idempotency key arrived again with different parameters."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(ValidationReason.IDEMPOTENCY_CONFLICT, f"{key}: {detail}")
        self.key = key


class ManualEntryRejected(AccessDomainError):
    """A guard's manual entry cannot be recorded (unknown student, another school)."""


def require_aware(value: datetime, field: str) -> datetime:
    """Return ``value`` in UTC; a naive datetime is rejected, never guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(ValidationReason.NAIVE_TIME, f"{field} must be timezone-aware")
    return value.astimezone(UTC)


def require_text(value: str, field: str) -> str:
    if not value or not value.strip():
        raise InvalidInput(ValidationReason.EMPTY_FIELD, f"{field} must not be empty")
    return value


def dt_from_doc(value: Any) -> datetime:
    """Read a stored instant; PyMongo without ``tz_aware=True`` returns naive UTC, read as UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_dt_from_doc(value: Any) -> datetime | None:
    return None if value is None else dt_from_doc(value)


def date_to_doc(value: date) -> str:
    return value.isoformat()


def date_from_doc(value: Any) -> date:
    return date.fromisoformat(str(value))


def time_to_doc(value: time) -> str:
    """``HH:MM`` when there are no seconds, else ``HH:MM:SS``; microseconds are not kept."""
    if value.second:
        return value.strftime("%H:%M:%S")
    return value.strftime("%H:%M")


def time_from_doc(value: Any) -> time:
    return time.fromisoformat(str(value))


def fingerprint(payload: Doc) -> str:
    """Stable digest of a command's parameters: tells a replay from a conflicting key reuse."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seconds_of_day(value: time) -> int:
    return value.hour * 3600 + value.minute * 60 + value.second


def time_of_seconds(seconds: int) -> time:
    seconds = max(0, min(seconds, 24 * 3600 - 1))
    return time(seconds // 3600, seconds % 3600 // 60, seconds % 60)


def check_event_time(
    at: datetime, now: datetime, *, max_skew: timedelta, max_age: timedelta, field: str
) -> datetime:
    """Validate a device-reported instant against the service clock; return it in UTC.

    Rejects a naive time, a time more than ``max_skew`` ahead of ``now`` (device clocks drift, so a
    little is tolerated) and a time more than ``max_age`` behind it (no device buffers that long:
    it is a corrupt or replayed message). The handler dead-letters these with the reason.
    """
    at_utc = require_aware(at, field)
    now_utc = require_aware(now, "now")
    if at_utc > now_utc + max_skew:
        raise InvalidInput(ValidationReason.FUTURE_TIME, f"{field} {at_utc} is after now {now_utc}")
    if at_utc < now_utc - max_age:
        raise InvalidInput(ValidationReason.TOO_OLD, f"{field} {at_utc} is older than {max_age}")
    return at_utc
