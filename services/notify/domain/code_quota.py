"""How many one-time codes a number, and the service as a whole, may receive.

An SMS costs money and a code is sent to whatever number a stranger types into the
registration or password-reset form: a flood of codes is either SMS pumping (numbers of a
premium-rate range abroad, paid per message) or harassment of one person. So codes go only to
the countries the service is for (Russia, ``+7``, by default), at most a few per number per
hour and per day, and at most so many per minute in total. The counts are kept per number and
UTC day (hourly buckets) and per UTC minute; fixed buckets, not sliding windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .clock import require_aware


class CodeRefusal(StrEnum):
    """Why a one-time code was not sent."""

    COUNTRY_NOT_SERVED = "country_not_served"
    NUMBER_QUOTA = "number_quota"
    GLOBAL_QUOTA = "global_quota"


@dataclass(frozen=True, slots=True)
class CodePolicy:
    country_prefixes: tuple[str, ...] = ("+7",)
    per_number_per_hour: int = 5
    per_number_per_day: int = 10
    per_minute: int = 600


@dataclass(slots=True)
class NumberDay:
    """Codes sent to one number on one UTC day, by hour."""

    phone: str
    day: str
    hours: dict[str, int] = field(default_factory=dict)
    version: int = 0

    @property
    def key(self) -> str:
        return f"number:{self.phone}:{self.day}"


@dataclass(slots=True)
class MinuteTotal:
    """Codes sent by the service in one UTC minute."""

    minute: str
    count: int = 0
    version: int = 0

    @property
    def key(self) -> str:
        return f"minute:{self.minute}"


def buckets_of(phone: str, at: datetime) -> tuple[NumberDay, MinuteTotal]:
    """Empty counters for the number's day and the minute of ``at`` (what a store returns when
    nothing was counted yet)."""
    at = require_aware(at)
    return NumberDay(phone, at.strftime("%Y-%m-%d")), MinuteTotal(at.strftime("%Y-%m-%dT%H:%M"))


def admit_code(phone: str, at: datetime, number: NumberDay, minute: MinuteTotal,
               policy: CodePolicy) -> CodeRefusal | None:
    """Count the code and return None when it may go; otherwise the refusal, nothing counted.
    An e-mail address (``phone`` with an ``@``) has no country; it is counted like a number."""
    at = require_aware(at)
    if "@" not in phone and not phone.startswith(policy.country_prefixes):
        return CodeRefusal.COUNTRY_NOT_SERVED
    hour = f"{at.hour:02d}"
    if (number.hours.get(hour, 0) >= policy.per_number_per_hour
            or sum(number.hours.values()) >= policy.per_number_per_day):
        return CodeRefusal.NUMBER_QUOTA
    if minute.count >= policy.per_minute:
        return CodeRefusal.GLOBAL_QUOTA
    number.hours[hour] = number.hours.get(hour, 0) + 1
    number.version += 1
    minute.count += 1
    minute.version += 1
    return None
