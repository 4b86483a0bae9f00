from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _access_builders import MONDAY, local, make_card, make_schedule, make_tap

from services.access.domain import (
    AllowListEntry,
    CardBlocked,
    Direction,
    allow_list_entry,
    decide_tap,
    detect_absences,
    student_of,
)

pytestmark = pytest.mark.unit


def assert_plain(value: Any, path: str = "doc") -> None:
    if isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0), f"{path} is not UTC"
        assert value.tzinfo is UTC, f"{path} is not tagged UTC"
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path} has a non-string key"
            assert_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            assert_plain(item, f"{path}[{n}]")
    else:
        assert value is None or type(value) in (str, int, bool), f"{path} is {type(value)}"


def test_every_aggregate_document_holds_only_bson_friendly_values() -> None:
    schedule = make_schedule()
    card = make_card()
    card.apply(CardBlocked("b-1", card.card_uid, local(MONDAY, "07:00"), "lost"))
    active = make_card(uid="OK1", contract="87654321")
    tap = make_tap(local(MONDAY, "08:40"), card_uid="OK1")
    decided = decide_tap(
        tap, card=active, schedule=schedule, day=None, previous=None, now=tap.tapped_at
    )
    out = make_tap(local(MONDAY, "14:00"), card_uid="OK1", direction=Direction.OUT)
    decide_tap(
        out, card=active, schedule=schedule, day=decided.day, previous=None, now=out.tapped_at
    )
    student = student_of(card)
    assert student is not None and decided.day is not None
    absent = detect_absences(schedule, [student], {}, MONDAY, local(MONDAY, "11:00")).days[0]

    for doc in (
        schedule.to_doc(),
        card.to_doc(),
        decided.record.to_doc(),
        decided.day.to_doc(),
        absent.to_doc(),
        allow_list_entry(card).to_doc(),
    ):
        assert_plain(doc)
    assert AllowListEntry.from_doc(allow_list_entry(card).to_doc()) == allow_list_entry(card)
