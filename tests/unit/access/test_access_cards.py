from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from _access_builders import MONDAY, SCHOOL, local

from services.access.domain import (
    AllowListEntry,
    AllowListEntryChanged,
    CardBlocked,
    CardIssued,
    CardRecord,
    CardStatus,
    CardUnblocked,
    IdempotencyConflict,
    InvalidInput,
    TapReason,
    ValidationReason,
    allow_list_entry,
    project_card,
    reissue_card,
)

pytestmark = pytest.mark.unit

T0 = local(MONDAY, "07:00")


def issued(event_id: str = "e-1", at_minutes: int = 0, class_name: str = "5A") -> CardIssued:
    return CardIssued(
        event_id, "UID1", "12345678", SCHOOL, class_name, T0 + timedelta(minutes=at_minutes)
    )


def test_an_issued_card_is_active_and_allowed_in_the_allow_list() -> None:
    outcome = project_card(None, issued())

    assert outcome.card.status is CardStatus.ACTIVE
    assert outcome.events == (AllowListEntryChanged("UID1", SCHOOL, True, TapReason.OK),)


def test_a_blocked_card_is_denied_in_the_allow_list_with_the_reason() -> None:
    card = project_card(None, issued()).card

    outcome = project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1), "lost"))

    assert card.status is CardStatus.BLOCKED
    assert outcome.events == (
        AllowListEntryChanged("UID1", SCHOOL, False, TapReason.CARD_BLOCKED),
    )


def test_unblocking_restores_the_allowed_entry() -> None:
    card = project_card(None, issued()).card
    project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1)))

    outcome = project_card(card, CardUnblocked("e-3", "UID1", T0 + timedelta(minutes=2)))

    assert card.status is CardStatus.ACTIVE
    assert allow_list_entry(card) == AllowListEntry("UID1", SCHOOL, True, TapReason.OK)
    assert len(outcome.events) == 1


def test_a_redelivered_card_fact_changes_nothing_and_emits_nothing() -> None:
    card = project_card(None, issued()).card
    project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1)))
    version = card.version

    outcome = project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1)))

    assert outcome.changed is False
    assert outcome.events == ()
    assert card.version == version


def test_a_card_fact_id_reused_with_other_data_is_a_conflict() -> None:
    card = project_card(None, issued()).card

    with pytest.raises(IdempotencyConflict):
        project_card(card, issued(class_name="6B"))


def test_an_unblock_delivered_before_an_older_block_keeps_the_card_active() -> None:
    card = project_card(None, issued()).card
    project_card(card, CardUnblocked("e-3", "UID1", T0 + timedelta(minutes=5)))

    outcome = project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1)))

    assert card.status is CardStatus.ACTIVE
    assert outcome.events == ()


def test_a_block_and_an_unblock_at_the_same_instant_leave_the_card_blocked() -> None:
    card = project_card(None, issued()).card
    project_card(card, CardUnblocked("e-3", "UID1", T0 + timedelta(minutes=5)))

    project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=5)))

    assert card.status is CardStatus.BLOCKED


def test_a_block_seen_before_the_issue_is_unknown_then_blocked_once_issued() -> None:
    early = project_card(None, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1)))
    assert early.card.status is CardStatus.UNKNOWN
    assert early.events[0].reason is TapReason.UNKNOWN_CARD

    later = project_card(early.card, issued())

    assert later.card.status is CardStatus.BLOCKED
    assert later.events[0].reason is TapReason.CARD_BLOCKED


def test_a_newer_issue_moves_the_card_to_another_class_and_an_older_one_is_ignored() -> None:
    card = project_card(None, issued()).card
    project_card(card, issued("e-9", at_minutes=60, class_name="6A"))

    project_card(card, issued("e-8", at_minutes=30, class_name="5B"))

    assert card.class_name == "6A"


def test_a_card_record_round_trips_through_a_plain_document() -> None:
    card = project_card(None, issued()).card
    project_card(card, CardBlocked("e-2", "UID1", T0 + timedelta(minutes=1), "lost"))

    doc = card.to_doc()

    assert CardRecord.from_doc(doc) == card
    assert doc["status"] == "blocked"


def test_a_document_read_back_with_naive_utc_times_is_understood_as_utc() -> None:
    card = project_card(None, issued()).card
    doc = card.to_doc()
    assert card.issued_at is not None
    doc["issued_at"] = card.issued_at.astimezone(UTC).replace(tzinfo=None)

    assert CardRecord.from_doc(doc).issued_at == card.issued_at


def test_a_reissue_under_the_same_contract_is_refused_not_saved_twice() -> None:
    with pytest.raises(InvalidInput) as refused:
        reissue_card(None, [], None, None, issued(), "12345678")

    assert refused.value.reason is ValidationReason.SAME_CONTRACT
