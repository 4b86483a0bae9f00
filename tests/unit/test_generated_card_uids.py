"""The school-day scenario and the test helpers make up card UIDs by the thousand: none may be
shaped like a bank card number, which the contracts refuse (the card would never open)."""

from __future__ import annotations

import random

import pytest
from pydantic import TypeAdapter

from contracts.types import CardUid
from deploy.local.schoolday import generate_city
from tests.support import chip_uid

pytestmark = pytest.mark.unit

CARD_UID = TypeAdapter(CardUid)


def test_a_big_generated_city_has_only_card_uids_the_contracts_accept() -> None:
    # Seed 2 used to draw 3 all-digit, Luhn-valid UIDs (PAN-shaped) among 20,000 students.
    uids = [s.card_uid for s in generate_city(random.Random(2), schools=3,
                                              students=20_000).students]
    assert not [u for u in uids if u.isdigit()]
    for value in uids:
        CARD_UID.validate_python(value)


def test_the_test_helpers_chip_uids_are_never_all_digits() -> None:
    rng = random.Random(2)
    uids = [chip_uid(rng) for _ in range(20_000)]
    assert not [u for u in uids if u.isdigit()]
    for value in uids:
        CARD_UID.validate_python(value)
