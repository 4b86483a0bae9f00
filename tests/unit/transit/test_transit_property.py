"""Property: whatever order the taps of a card arrive in, with duplicates, the money billed
(debits minus refunds) equals pricing the same taps in tap order, and no ride is debited twice."""

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
from _transit_builders import CARD, OPERATOR, local, rulebook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.transit.domain import (
    CardTravel,
    ConcessionEligibility,
    FareAssessed,
    FareCorrected,
    FareRefundIssued,
    FareRulebook,
    Mode,
    Outcome,
    Tap,
    price_taps,
)

pytestmark = pytest.mark.unit

START = local("2026-03-06 05:00")  # Friday: the taps span the Sunday -> Monday week boundary
SPAN_IN_5_MINUTES = 4 * 24 * 12


@dataclass(frozen=True)
class Scenario:
    rules: FareRulebook
    concession: ConcessionEligibility | None
    taps: list[Tap]
    arrival: list[int]
    redelivered: list[int]


@st.composite
def scenarios(draw: Any) -> Scenario:
    rules = rulebook(
        window=draw(st.sampled_from([0, 30, 60, 90])),
        max_transfers=draw(st.sampled_from([None, 0, 1, 2])),
        same_route=draw(st.booleans()),
        daily=draw(st.sampled_from([None, 5000, 7000, 10500])),
        weekly=draw(st.sampled_from([None, 14000, 20000])),
    )
    concession = draw(st.sampled_from(
        [None, ConcessionEligibility(date(2026, 3, 7)), ConcessionEligibility(date(2026, 6, 1))]
    ))
    n = draw(st.integers(1, 12))
    # Few distinct slots keep taps close together, so transfers and caps interact a lot.
    slots = draw(st.lists(st.integers(0, SPAN_IN_5_MINUTES), min_size=1, max_size=4))
    taps = []
    for i in range(n):
        base = draw(st.sampled_from(slots))
        offset = draw(st.integers(0, 36))
        taps.append(Tap(
            tap_id=f"t{i:02d}",
            validator_id="val",
            vehicle_id="veh",
            route=draw(st.sampled_from(["1", "2", "3"])),
            mode=draw(st.sampled_from([Mode.BUS, Mode.TRAM, Mode.MINIBUS])),
            stop="stop",
            card_uid=CARD,
            tapped_at=START + timedelta(minutes=5 * (base + offset)),
            offline=draw(st.booleans()),
        ))
    arrival = draw(st.permutations(range(n)))
    redelivered = draw(st.lists(st.integers(0, n - 1), max_size=3))
    return Scenario(rules, concession, taps, list(arrival), redelivered)


def _check(scenario: Scenario) -> None:
    now = START + timedelta(days=6)
    travel = CardTravel(card_uid=CARD, operator_id=OPERATOR, concession=scenario.concession)
    outcomes: dict[str, Outcome] = {}
    events: list[Any] = []
    for position, index in enumerate(scenario.arrival):
        tap = scenario.taps[index]
        outcome = travel.record_tap(tap, scenario.rules, now)
        outcomes[tap.tap_id] = outcome
        events.extend(outcome.events)
        for again in scenario.redelivered:
            if again in scenario.arrival[: position + 1]:
                repeat = travel.record_tap(scenario.taps[again], scenario.rules, now)
                assert repeat.duplicate
                assert repeat.events == outcomes[scenario.taps[again].tap_id].events

    in_order = price_taps(scenario.taps, scenario.rules, scenario.concession)
    expected_total = sum(p.fare for p in in_order)

    debits = sum(e.debit_amount for e in events if isinstance(e, FareAssessed))
    refunds = sum(e.amount for e in events if isinstance(e, FareRefundIssued))
    assert debits - refunds == expected_total == travel.net_charged
    assert {p.tap.tap_id: (p.fare, p.explanation) for p in in_order} == {
        k: (r.fare, r.explanation) for k, r in travel.rides.items()
    }
    assessed = Counter(e.ride_id for e in events if isinstance(e, FareAssessed))
    assert assessed == Counter(t.tap_id for t in scenario.taps)
    assert all(e.amount > 0 for e in events if isinstance(e, FareRefundIssued))
    correction_ids = [e.correction_id for e in events if isinstance(e, FareRefundIssued)]
    assert len(correction_ids) == len(set(correction_ids))
    assert CardTravel.from_doc(travel.to_doc()) == travel


def _check_in_order_arrival_never_corrects(scenario: Scenario) -> None:
    now = START + timedelta(days=6)
    travel = CardTravel(card_uid=CARD, operator_id=OPERATOR, concession=scenario.concession)
    for tap in sorted(scenario.taps, key=lambda t: t.order_key):
        outcome = travel.record_tap(tap, scenario.rules, now)
        assert not [e for e in outcome.events if isinstance(e, FareCorrected | FareRefundIssued)]
        assert _absorbed(outcome) == 0


def _absorbed(outcome: Outcome) -> int:
    return sum(a.amount for e in outcome.events if isinstance(e, FareAssessed) for a in e.absorbed)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_taps_in_any_arrival_order_bill_what_pricing_them_in_tap_order_bills(
    scenario: Scenario,
) -> None:
    _check(scenario)


@settings(max_examples=100, deadline=None, database=None)
@given(scenarios())
def test_taps_arriving_in_tap_order_never_cause_a_correction(scenario: Scenario) -> None:
    _check_in_order_arrival_never_corrects(scenario)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_taps_in_any_arrival_order_bill_the_in_order_price_over_many_more_examples(
    scenario: Scenario,
) -> None:
    _check(scenario)
