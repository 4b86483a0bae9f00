"""Shared field types of the wire vocabulary: identifiers, phone numbers, times.

Each type carries its own description and example, so every model that uses it is documented
the same way in the JSON Schema snapshots and in the AsyncAPI document.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
)


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00: an OverflowError is no refusal
        raise ValueError("instant out of range: before 0001-01-01 or after 9999-12-31 "
                         "in UTC") from None


def _e164(value: str) -> str:
    try:
        parsed = phonenumbers.parse(value, "RU")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


UtcDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    Field(
        description="Timezone-aware instant, normalised to UTC on the wire (RFC 3339). "
        "Naive datetimes are rejected.",
        examples=["2026-09-01T05:12:30Z"],
    ),
]


def _ascii_digits(value: str) -> str:
    # The schema's \d means 0-9 (JSON Schema patterns are ECMA 262); pydantic's regex engine
    # also takes the digits of other scripts ("٤٠٠١٢٣٤٥"), which no contract number has.
    if not value.isascii():
        raise ValueError("digits other than 0-9")
    return value


ContractNumber = Annotated[
    str,
    StringConstraints(pattern=r"^\d{8}$", max_length=8),
    AfterValidator(_ascii_digits),
    Field(
        description="School card contract number: exactly 8 decimal digits; the account key "
        "of wallet and the child's key everywhere else.",
        examples=["40012345"],
    ),
]
def luhn_valid(digits: str) -> bool:
    """The Luhn check digit test every bank card number (PAN) passes."""
    total = 0
    for n, char in enumerate(reversed(digits)):
        value = int(char) * (2 if n % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _not_a_pan(value: str) -> str:
    # A PAN must never enter the platform (PCI DSS): refuse anything shaped like one, and never
    # repeat the value in the message.
    if value.isdigit() and 13 <= len(value) <= 19 and luhn_valid(value):
        raise ValueError("looks like a bank card number (13-19 digits passing the Luhn check); "
                         "a card UID is the contactless chip's UID in hex, never a PAN")
    return value


CardUid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-F]{8,20}$", max_length=20),
    AfterValidator(_not_a_pan),
    Field(
        description="Contactless chip UID as upper-case hex (4, 7 or 10 bytes). Never a bank "
        "PAN: 13-19 decimal digits passing the Luhn check are refused as a schema violation.",
        examples=["04A2B3C4D5E6F7"],
    ),
]
Phone = Annotated[
    str,
    StringConstraints(max_length=32),  # as typed ("8 (912) 123-45-67"), before normalising
    AfterValidator(_e164),
    Field(
        description="Phone number, normalised to E.164 (a Russian number may be given "
        "without +7). Personal data: only on topics meant for auth and notify.",
        examples=["+79121234567"],
    ),
]
Email = Annotated[
    str,
    StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254),
    Field(description="E-mail address (personal data).", examples=["parent@example.ru"]),
]
Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$", max_length=128),
    Field(
        description="Opaque identifier chosen by its producer: 1-128 characters of letters, "
        "digits and . _ : -; unique within its kind.",
        examples=["pay-2026-000123"],
    ),
]
SchoolId = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9\-]{1,63}$", max_length=64),
    Field(description="School identifier (lower-case slug).", examples=["izh-school-42"]),
]
AccountId = Annotated[
    str,
    StringConstraints(pattern=r"^acc_[A-Za-z0-9]{8,40}$", max_length=44),
    Field(description="Account id issued by auth (parents, staff, integrators).",
          examples=["acc_7f3a9c2e1b4d"]),
]
def _known_zone(value: str) -> str:
    # The pattern lets any word through ("A", "Mars/Base"): every service that reads the zone
    # must find it, or a card is opened by some services and crashes the others.
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("not a time zone of the IANA database") from None
    return value


TimeZoneName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+\-]+)*$", max_length=64),
    AfterValidator(_known_zone),
    Field(description="IANA time zone used for local days and for what people read.",
          examples=["Europe/Samara"]),
]
def calendar_date(value: str) -> str:
    """A YYYY-MM-DD string that is a day of the calendar (2026-02-30 is refused here, at the
    edge, rather than failing a service's handler on every delivery)."""
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a calendar date (YYYY-MM-DD)") from None
    return value


LocalDate = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$", max_length=10),
    AfterValidator(calendar_date),
    Field(description="Calendar date in the school's or city's time zone (ISO 8601).",
          examples=["2026-09-01"]),
]
LocalTime = Annotated[
    str,
    StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", max_length=5),
    Field(description="Wall-clock time HH:MM in the school's or city's time zone.",
          examples=["08:30"]),
]


class SubBalance(StrEnum):
    """A wallet sub-balance: the seeds' "Финансы", "Электронная столовая" and transit."""

    GENERAL = "general"
    CANTEEN = "canteen"
    TRANSIT = "transit"


class GuardianRole(StrEnum):
    """What a guardian may do for a child: primary (full control), co-guardian (top up, see
    everything, no limit changes), viewer (notifications only)."""

    PRIMARY = "primary"
    CO_GUARDIAN = "co_guardian"
    VIEWER = "viewer"


class Locale(StrEnum):
    RU = "ru"
    EN = "en"


SECRET_MARK = "x-secret"
"""JSON Schema keyword set on every secret field (and shown in the AsyncAPI document): what
dead-letter copies, the operator CLI and logs mask. contracts.redaction finds these fields."""

_CLEAR_IN_JSON = PlainSerializer(lambda v: v.get_secret_value(), return_type=str,
                                 when_used="json")

Secret = Annotated[
    SecretStr,
    _CLEAR_IN_JSON,
    Field(max_length=1024, json_schema_extra={SECRET_MARK: True},
          description="A secret (password, push token): masked in repr, logs, dead-letter "
          "copies and the operator CLI; sent in clear only inside the JSON payload of the "
          "topic meant for it. At most 1024 characters (a password's own rule, 8-128 "
          "characters, is auth's and answered as such).",
          examples=["correct horse battery staple"]),
]
ShortSecret = Annotated[
    SecretStr,
    _CLEAR_IN_JSON,
    Field(max_length=64, json_schema_extra={SECRET_MARK: True},
          description="A short secret a person types (one-time code, authenticator code, "
          "activation code): masked like every secret; at most 64 characters.",
          examples=["493817"]),
]
LongSecret = Annotated[
    SecretStr,
    _CLEAR_IN_JSON,
    Field(max_length=16_384, json_schema_extra={SECRET_MARK: True},
          description="A long secret a program holds (a signed access token, an otpauth:// "
          "URI): masked like every secret; at most 16 384 characters (an access token grows "
          "with the parent's children).",
          examples=["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhY2NfN2YzYTljMmUxYjRkIn0.c2ln"]),
]

REPORT_TEXT_MAX = 4_000_000
"""Bound of the CSV and SVG texts in replies, in characters: above the longest a page of 500
statement lines can render, and far above what a reply can carry anyway (a reply over
``<SERVICE>_REPLY_MAX_BYTES``, 900 kB by default, is answered ``reply_too_large``), so it never
refuses a report a service would send, yet no reader is handed an unbounded string."""
