"""One-time codes go to Russian numbers only, a few per number and hour and day, a bounded
number per minute in total (SMS pumping and harassment by a stranger typing a number)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notify import domain as d

pytestmark = pytest.mark.unit

AT = datetime(2026, 9, 1, 7, 30, tzinfo=UTC)
POLICY = d.CodePolicy(("+7",), per_number_per_hour=3, per_number_per_day=5, per_minute=4)


def send(phone: str, at: datetime, counts: dict[str, object]) -> d.CodeRefusal | None:
    """Admit one code against counters kept across calls, as the store keeps them."""
    number, minute = d.buckets_of(phone, at)
    number = counts.setdefault(number.key, number)  # type: ignore[assignment]
    minute = counts.setdefault(minute.key, minute)  # type: ignore[assignment]
    return d.admit_code(phone, at, number, minute, POLICY)  # type: ignore[arg-type]


def test_a_number_abroad_gets_no_code():
    assert send("+88216123456", AT, {}) is d.CodeRefusal.COUNTRY_NOT_SERVED
    assert send("+79121234567", AT, {}) is None


def test_a_number_gets_its_hourly_then_its_daily_quota_and_no_more():
    counts: dict[str, object] = {}
    hour = [send("+79121234567", AT + timedelta(seconds=70 * i), counts) for i in range(4)]
    assert hour == [None, None, None, d.CodeRefusal.NUMBER_QUOTA]
    later = [send("+79121234567", AT + timedelta(hours=1, minutes=i * 20), counts)
             for i in range(3)]
    assert later == [None, None, d.CodeRefusal.NUMBER_QUOTA]  # 5 a day
    assert send("+79121234567", AT + timedelta(days=1), counts) is None  # a new day
    assert send("+79127654321", AT + timedelta(hours=1), counts) is None  # another number


def test_the_service_sends_at_most_its_minute_quota_whatever_the_numbers():
    counts: dict[str, object] = {}
    sent = [send(f"+7912000000{i}", AT, counts) for i in range(6)]
    assert sent.count(None) == 4 and sent[4:] == [d.CodeRefusal.GLOBAL_QUOTA] * 2
    assert send("+79120000009", AT + timedelta(minutes=1), counts) is None


def test_a_refused_code_counts_nothing():
    number, minute = d.buckets_of("+79121234567", AT)
    full = d.MinuteTotal(minute.minute, count=POLICY.per_minute, version=7)
    assert d.admit_code("+79121234567", AT, number, full, POLICY) is d.CodeRefusal.GLOBAL_QUOTA
    assert (number.hours, number.version, full.count, full.version) == ({}, 0, 4, 7)
