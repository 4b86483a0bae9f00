"""Transit payments switched off by the parent: the card is denied at once with that reason,
kept apart from a block or a debt, and its taps from the switch on are refused."""

from datetime import timedelta

import pytest
from _transit_builders import CARD, FULL, OPERATOR, local, rulebook, tap

from services.transit.domain import (
    CardAllowed,
    CardDenied,
    CardTravel,
    refuses_fare_tap,
    untravelled_card_blocked,
)

pytestmark = pytest.mark.unit

NOW = local("2026-03-09 12:00")


def _travel() -> CardTravel:
    return CardTravel(CARD, OPERATOR)


def test_switching_payments_off_denies_the_card_and_switching_on_lifts_it() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_fare_debited("a", FULL, NOW)

    off = travel.set_payments_off(True, NOW)
    again = travel.set_payments_off(True, NOW)
    on = travel.set_payments_off(False, NOW)

    assert off.events == (CardDenied(CARD, 0, (), NOW, payments_off=True),)
    assert again.events == ()
    assert on.events == (CardAllowed(CARD, NOW),) and not travel.denied


def test_a_blocked_card_switched_on_stays_denied_for_the_block() -> None:
    travel = _travel()
    travel.set_blocked(True, NOW)
    travel.set_payments_off(True, NOW)

    on = travel.set_payments_off(False, NOW)

    assert on.events == (CardDenied(CARD, 0, (), NOW, blocked=True),) and travel.denied


def test_a_card_switched_off_stays_denied_when_it_is_unblocked_or_its_debt_is_settled() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_fare_declined("a", FULL, NOW)
    travel.set_blocked(True, NOW)

    off = travel.set_payments_off(True, NOW)
    unblocked = travel.set_blocked(False, NOW)
    settled = travel.record_debt_settled("topup-1", NOW)
    still_denied = travel.denied
    on = travel.set_payments_off(False, NOW)

    assert off.events == (CardDenied(CARD, FULL, ("a",), NOW, blocked=True, payments_off=True),)
    assert unblocked.events == (CardDenied(CARD, FULL, ("a",), NOW, payments_off=True),)
    assert settled.events == () and still_denied
    assert on.events == (CardAllowed(CARD, NOW),) and not travel.denied


def test_the_switch_survives_the_stored_document() -> None:
    travel = _travel()
    travel.set_payments_off(True, NOW)

    stored = CardTravel.from_doc(travel.to_doc())

    assert stored.payments_off and stored.denied
    assert stored.set_payments_off(True, NOW).events == ()


def test_a_card_that_never_rode_is_denied_while_its_payments_are_off() -> None:
    assert untravelled_card_blocked(CARD, False, NOW, payments_off=True) == (
        CardDenied(CARD, 0, (), NOW, payments_off=True),)
    assert untravelled_card_blocked(CARD, True, NOW, payments_off=False) == (
        CardDenied(CARD, 0, (), NOW, blocked=True),)
    assert untravelled_card_blocked(CARD, False, NOW) == (CardAllowed(CARD, NOW),)


def test_a_tap_from_the_switch_on_is_refused_and_an_earlier_one_uploaded_late_is_not() -> None:
    assert refuses_fare_tap(NOW, NOW)
    assert refuses_fare_tap(NOW, NOW + timedelta(minutes=1))
    assert not refuses_fare_tap(NOW, NOW - timedelta(minutes=1))
    assert not refuses_fare_tap(None, NOW)
