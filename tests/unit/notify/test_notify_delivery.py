from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain import (
    Channel,
    CodePurpose,
    DeliveryStatus,
    JournalQuery,
    Message,
    MessageDead,
    MessageDeliveryFailed,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    OneTimeCodeRequest,
    RetryPolicy,
    filter_journal,
    journal_line,
    route,
    route_one_time_code,
)

from .builders import entered, guardian, msk, purchase, top_up

pytestmark = pytest.mark.unit

CODE = "740193"


def push_message() -> Message:
    return route(entered("ev-1"), [guardian()], msk(8, 6)).messages[0]


def code_message() -> Message:
    request = OneTimeCodeRequest("otc-1", "+79990001122", CODE, CodePurpose.REGISTRATION,
                                 msk(9, 0))
    return route_one_time_code(request, msk(9, 0))


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, cap=timedelta(seconds=10))
    assert [policy.delay_after(n).total_seconds() for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_failed_attempts_are_retried_with_backoff_then_the_message_goes_dead() -> None:
    m = push_message()
    now = msk(8, 6)
    outcomes = []
    for _ in range(5):
        outcome = m.mark_failed(now, "provider_503")
        outcomes.append(outcome)
        if isinstance(outcome, MessageDeliveryFailed):
            assert not m.is_due(outcome.retry_at - timedelta(milliseconds=1))
            assert m.is_due(outcome.retry_at)
            now = outcome.retry_at
    delays = [o.retry_at for o in outcomes if isinstance(o, MessageDeliveryFailed)]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(delays)] == [2, 4, 8]
    assert isinstance(outcomes[-1], MessageDead)
    assert m.status is DeliveryStatus.DEAD and m.attempts == 5 and m.due_at is None


def test_a_send_that_fails_twice_then_succeeds_is_sent_once() -> None:
    m = push_message()
    m.mark_failed(msk(8, 6), "timeout")
    m.mark_failed(msk(8, 6) + timedelta(seconds=1), "timeout")
    sent = m.mark_sent(msk(8, 6) + timedelta(seconds=3), "prov-9")
    assert sent is not None and sent.attempts == 3
    assert m.mark_sent(msk(8, 7)) is None
    assert (m.status, m.attempts, m.provider_message_id) == (DeliveryStatus.SENT, 3, "prov-9")


def test_a_permanent_failure_goes_dead_at_once() -> None:
    m = push_message()
    assert isinstance(m.mark_failed(msk(8, 6), "unregistered", permanent=True), MessageDead)
    assert m.status is DeliveryStatus.DEAD


def test_a_repeated_failure_report_for_the_same_attempt_changes_nothing() -> None:
    m = push_message()
    m.mark_failed(msk(8, 6), "timeout", attempt=1)
    version = m.version
    assert m.mark_failed(msk(8, 6), "timeout", attempt=1) is None
    assert (m.attempts, m.version) == (1, version)


def test_a_terminal_message_refuses_further_failures() -> None:
    m = push_message()
    m.mark_sent(msk(8, 6))
    with pytest.raises(NotifyError) as err:
        m.mark_failed(msk(8, 7), "late report")
    assert err.value.reason is NotifyRejection.ALREADY_TERMINAL


def test_a_held_message_cannot_be_sent_directly() -> None:
    g = guardian()
    g.set_digest(enabled=True, kinds=frozenset({NotificationKind.CANTEEN_PURCHASE}))
    held = route(purchase(), [g], msk(12, 31)).messages[0]
    assert held.status is DeliveryStatus.HELD and not held.is_due(msk(23, 0))
    with pytest.raises(NotifyError) as err:
        held.mark_sent(msk(12, 32))
    assert err.value.reason is NotifyRejection.NOT_DUE


def test_messages_round_trip_through_plain_documents_in_every_state() -> None:
    m = push_message()
    m.mark_failed(msk(8, 6), "timeout")
    for state in (m, code_message(), route(top_up(), [guardian()], msk(10, 1)).messages[1]):
        doc = state.to_doc()
        assert Message.from_doc(doc).to_doc() == doc
        assert all(isinstance(v, str | int | bool | datetime | type(None)) for v in doc.values())


def test_naive_datetimes_from_the_store_are_read_as_utc() -> None:
    doc = push_message().to_doc()
    doc["created_at"] = doc["created_at"].replace(tzinfo=None)
    assert Message.from_doc(doc).created_at.tzinfo is UTC


def test_a_one_time_code_goes_only_by_sms_to_the_requested_phone_at_once() -> None:
    m = code_message()
    assert (m.kind, m.channel, m.address, m.guardian_id) == (
        NotificationKind.ONE_TIME_CODE, Channel.SMS, "+79990001122", None)
    assert m.is_due(msk(9, 0))
    assert CODE in m.body


def test_the_code_never_appears_in_redacted_views_logs_keys_or_the_journal() -> None:
    m = code_message()
    views = [repr(m), str(m), repr(m.redacted()), m.redacted().body, str(m.to_log()),
             m.short, m.subject, m.dedupe_key, repr(m.queued_event())]
    assert not any(CODE in v for v in views)
    assert "+79990001122" not in repr(m)
    assert journal_line(m) is None


def test_the_code_is_erased_from_the_document_once_sent_or_dead() -> None:
    sent, dead = code_message(), code_message()
    assert CODE in sent.to_doc()["body"]  # still needed for a retry
    sent.mark_sent(msk(9, 0))
    dead.mark_failed(msk(9, 0), "invalid_number", permanent=True)
    assert CODE not in str(sent.to_doc()) and CODE not in str(dead.to_doc())


def test_a_code_request_with_an_invalid_phone_is_refused() -> None:
    request = OneTimeCodeRequest("otc-2", "89990001122", CODE, CodePurpose.LOGIN, msk(9, 0))
    with pytest.raises(NotifyError) as err:
        route_one_time_code(request, msk(9, 0))
    assert err.value.reason is NotifyRejection.INVALID_PHONE


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(NotifyError) as err:
        route(entered(), [guardian()], datetime(2025, 9, 10, 8, 0))
    assert err.value.reason is NotifyRejection.NAIVE_DATETIME


def test_the_journal_shows_status_and_short_text_and_filters_by_query() -> None:
    g = guardian()
    messages = [
        *route(entered("e1", msk(8, 5)), [g], msk(8, 5)).messages,
        *route(purchase("e2", msk(12, 30)), [g], msk(12, 30)).messages,
        *route(top_up("e3", msk(18, 0)), [g], msk(18, 0)).messages,
        *route(entered("other-day", msk(8, 5, day=11)), [g], msk(8, 5, day=11)).messages,
        *route(entered("e4", msk(8, 5)), [guardian("g-2")], msk(8, 5)).messages,
    ]
    messages[0].mark_sent(msk(8, 5))
    messages[1].mark_failed(msk(12, 30), "gone", permanent=True)
    lines = [line for m in messages if (line := journal_line(m)) is not None]

    day = JournalQuery("g-1", since=msk(0, 0), until=msk(0, 0, day=11))
    assert [(line.kind, line.status) for line in filter_journal(lines, day)] == [
        (NotificationKind.RECEIPT, DeliveryStatus.PENDING),
        (NotificationKind.TOP_UP, DeliveryStatus.PENDING),
        (NotificationKind.CANTEEN_PURCHASE, DeliveryStatus.DEAD),
        (NotificationKind.CHILD_ENTERED, DeliveryStatus.SENT),
    ]
    emails = JournalQuery("g-1", channels=frozenset({Channel.EMAIL}))
    assert [line.text for line in filter_journal(lines, emails)] == [
        "Квитанция: 500,00\u00a0₽"
    ]
    failed = JournalQuery("g-1", statuses=frozenset({DeliveryStatus.DEAD}))
    assert [line.dedupe_key for line in filter_journal(lines, failed)] == ["e2:g-1:push"]
    page = JournalQuery("g-1", limit=2, offset=1)
    assert [line.dedupe_key for line in filter_journal(lines, page)] == [
        "e3:g-1:email", "e3:g-1:push"]


def test_the_journal_time_is_the_event_time_in_utc() -> None:
    m = push_message()
    line = journal_line(m)
    assert line is not None and line.at == msk(8, 5) and line.at.tzinfo is UTC
