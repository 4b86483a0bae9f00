"""Domain events -> wire events: deterministic ids, refunds net of cancelled debt, and the
rules-version gate of SetFareRules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.transit import domain as d
from services.transit import outbound
from services.transit.domain.rules import rules_update_refusal
from tests.unit.transit._transit_builders import CARD, local, rulebook
from tests.unit.transit._transit_builders import tap as _tap

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 6, 19, 0, tzinfo=UTC)


def tap(tap_id: str, when: str, route: str = "12", *, offline: bool = False) -> d.Tap:
    return _tap(tap_id, when, route, offline=offline, stop="stop-central-square")


def _types(wired: list[outbound.Wired]) -> list[str]:
    return [type(message).__name__ for _, _, message, _ in wired]


def test_a_charged_ride_becomes_a_ride_record_and_a_fare_to_debit_with_stable_ids():
    travel = d.CardTravel(CARD, "izhevsk-gortrans")
    outcome = travel.record_tap(tap("t1", "2026-03-02 08:00"), rulebook(), NOW)
    first = list(outbound.to_wire(outcome.events, "40012345", NOW))
    again = list(outbound.to_wire(travel.record_tap(tap("t1", "2026-03-02 08:00"),
                                                    rulebook(), NOW).events, "40012345", NOW))
    assert _types(first) == ["RideRecorded", "FareAssessed"]
    assert [w[3] for w in first] == [w[3] for w in again]
    assert first[1][2].amount == 3_500  # type: ignore[attr-defined]


def test_a_free_transfer_is_recorded_but_nothing_is_sent_to_debit():
    travel = d.CardTravel(CARD, "izhevsk-gortrans")
    travel.record_tap(tap("t1", "2026-03-02 08:00", "12"), rulebook(), NOW)
    outcome = travel.record_tap(tap("t2", "2026-03-02 08:20", "29"), rulebook(), NOW)
    assert _types(list(outbound.to_wire(outcome.events, "40012345", NOW))) == ["RideRecorded"]


def test_a_late_tap_that_turns_a_charged_ride_into_a_transfer_sends_one_refund():
    travel = d.CardTravel(CARD, "izhevsk-gortrans")
    travel.record_tap(tap("t2", "2026-03-02 08:20", "29"), rulebook(), NOW)
    outcome = travel.record_tap(tap("t1", "2026-03-02 08:00", "12", offline=True), rulebook(),
                                NOW)
    wired = list(outbound.to_wire(outcome.events, "40012345", NOW))
    assert _types(wired) == ["RideRecorded", "FareAssessed", "FareCorrected"]
    correction: Any = wired[2][2]
    assert (correction.ride_id, correction.refund, correction.new_fare) == ("t2", 3_500, 0)
    assert correction.correction_id == "t2:corr:t1"


def test_a_refund_that_cancels_an_unpaid_debit_still_reaches_wallet_in_full():
    """Wallet writes its owed fare down by it; withheld, the next top-up would collect the
    fare at its old price (the 35.00 day that collected 70.00)."""
    event = d.FareRefundIssued("t2:corr:t1", CARD, "t2", 3_500, 3_500, "t1")
    [(topic, _, correction, _)] = outbound.to_wire([event], "40012345", NOW)
    assert topic == "transit.events.v1"
    assert correction.refund == 3_500  # type: ignore[attr-defined]


def test_a_lost_card_is_denied_as_blocked():
    denied = d.CardDenied(CARD, 0, (), NOW, blocked=True)
    [(_, _, entry, _)] = outbound.to_wire([denied], "40012345", NOW)
    assert entry.denied is True and entry.blocked is True  # type: ignore[attr-defined]


def test_a_denial_and_its_lifting_are_deny_list_entries_keyed_by_card():
    denied = d.CardDenied(CARD, 3_500, ("t1",), local("2026-03-02 09:00"))
    allowed = d.CardAllowed(CARD, local("2026-03-02 10:00"))
    [(topic, key, entry, _), (_, _, lifted, _)] = outbound.to_wire([denied, allowed], "4001",
                                                                   NOW)
    assert (topic, key) == ("transit.deny-list.v1", CARD)
    assert entry.denied is True and entry.debt == 3_500  # type: ignore[attr-defined]
    assert lifted.denied is False and lifted.debt == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("stored", "version", "digest", "refusal"), [
    (None, 1, "a", None),
    ((2, "a"), 3, "b", None),
    ((2, "a"), 2, "a", None),
    ((2, "a"), 2, "b", "version_conflict"),
    ((2, "a"), 1, "a", "stale_version"),
])
def test_a_fare_rules_version_replaces_only_an_older_one(stored, version, digest, refusal):
    result = rules_update_refusal(stored, version, digest)
    assert (result[0] if result else None) == refusal
