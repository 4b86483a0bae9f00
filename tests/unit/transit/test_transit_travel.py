from datetime import date, datetime
from typing import Any

import pytest
from _transit_builders import CARD, FULL, OPERATOR, local, rulebook, tap

from services.transit.domain import (
    CardAllowed,
    CardDenied,
    CardTravel,
    ConcessionEligibility,
    ConcessionExpiryReminded,
    DebitStatus,
    Explanation,
    FareAdjustment,
    FareAssessed,
    FareCorrected,
    FareRefundIssued,
    RejectionReason,
    Tap,
    TransitRejection,
    price_taps,
    untravelled_card_blocked,
)

pytestmark = pytest.mark.unit

NOW = local("2026-03-09 12:00")


def _travel() -> CardTravel:
    return CardTravel(card_uid=CARD, operator_id=OPERATOR)


def _assessed(events: tuple[Any, ...]) -> FareAssessed:
    first = events[0]
    assert isinstance(first, FareAssessed)
    return first


def _of(events: tuple[Any, ...], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def test_a_tap_is_charged_its_fare_and_explained() -> None:
    travel = _travel()

    outcome = travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    assessed = _assessed(outcome.events)
    assert (assessed.ride_id, assessed.fare, assessed.debit_amount) == ("a", FULL, FULL)
    assert assessed.explanation is Explanation.FULL_FARE
    assert travel.rides["a"].debit_status is DebitStatus.PENDING
    assert travel.net_charged == FULL
    assert travel.version == 1


def test_the_same_tap_delivered_twice_is_one_ride_and_one_debit() -> None:
    travel = _travel()
    first = travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    again = travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    assert again.duplicate
    assert again.events == first.events
    assert len(travel.rides) == 1
    assert travel.net_charged == FULL
    assert travel.version == 1


def test_a_reused_tap_id_with_other_data_is_an_explicit_conflict() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    with pytest.raises(TransitRejection) as caught:
        travel.record_tap(tap("a", "2026-03-02 08:05"), rulebook(), NOW)

    assert caught.value.reason is RejectionReason.TAP_ID_CONFLICT
    assert travel.rides["a"].tap.tapped_at == local("2026-03-02 08:00")


def test_a_late_earlier_tap_turns_a_charged_ride_into_a_transfer_and_refunds_it() -> None:
    travel = _travel()
    travel.record_tap(tap("b", "2026-03-02 08:30", "7"), rulebook(), NOW)

    outcome = travel.record_tap(tap("a", "2026-03-02 08:00", "12", offline=True), rulebook(), NOW)

    assessed = _assessed(outcome.events)
    assert (assessed.fare, assessed.debit_amount, assessed.out_of_order) == (FULL, FULL, True)
    [refund] = _of(outcome.events, FareRefundIssued)
    assert (refund.ride_id, refund.amount, refund.correction_id) == ("b", FULL, "b:corr:a")
    [correction] = _of(outcome.events, FareCorrected)
    assert (correction.old_fare, correction.new_fare) == (FULL, 0)
    assert correction.explanation is Explanation.TRANSFER_FREE
    assert travel.rides["b"].corrected
    assert travel.net_charged == FULL


def test_a_late_tap_that_takes_a_transfer_away_pays_for_it_in_its_own_debit() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00", "1"), rulebook(), NOW)
    travel.record_tap(tap("c", "2026-03-02 08:50", "3"), rulebook(), NOW)  # transfer of a

    # b at 08:30 becomes a's only transfer, so c must now pay: b's debit carries c's increase.
    outcome = travel.record_tap(tap("b", "2026-03-02 08:30", "2"), rulebook(), NOW)

    assessed = _assessed(outcome.events)
    assert (assessed.fare, assessed.explanation) == (0, Explanation.TRANSFER_FREE)
    assert assessed.absorbed == (FareAdjustment("c", FULL),)
    assert assessed.debit_amount == FULL
    assert _of(outcome.events, FareRefundIssued) == []
    assert len(_of(outcome.events, FareAssessed)) == 1
    assert travel.rides["c"].fare == FULL
    assert travel.net_charged == 2 * FULL


def test_decreases_and_increases_of_one_late_tap_cancel_out_without_moving_money() -> None:
    travel = _travel()
    for t in (tap("a", "2026-03-02 08:00", "1"), tap("b", "2026-03-02 08:50", "2"),
              tap("c", "2026-03-02 09:10", "3"), tap("d", "2026-03-02 09:40", "4")):
        travel.record_tap(t, rulebook(), NOW)
    assert [travel.rides[k].fare for k in "abcd"] == [FULL, 0, FULL, 0]

    outcome = travel.record_tap(tap("w", "2026-03-02 07:30", "5"), rulebook(), NOW)

    assert [travel.rides[k].fare for k in "wabcd"] == [FULL, 0, FULL, 0, FULL]
    assessed = _assessed(outcome.events)
    assert (assessed.debit_amount, assessed.absorbed) == (FULL, ())
    assert _of(outcome.events, FareRefundIssued) == []
    assert {c.ride_id for c in _of(outcome.events, FareCorrected)} == {"a", "b", "c", "d"}
    assert travel.net_charged == 3 * FULL


def test_a_late_tap_under_a_daily_cap_refunds_the_ride_that_was_capped_earlier() -> None:
    rules = rulebook(daily=2 * FULL, window=0)
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rules, NOW)
    travel.record_tap(tap("c", "2026-03-02 12:00"), rules, NOW)

    outcome = travel.record_tap(tap("b", "2026-03-02 10:00"), rules, NOW)

    [refund] = _of(outcome.events, FareRefundIssued)
    assert (refund.ride_id, refund.amount) == ("c", FULL)
    assert travel.rides["c"].explanation is Explanation.CAPPED
    assert travel.net_charged == 2 * FULL


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"card": "FFFF0000"}, RejectionReason.CARD_MISMATCH),
        ({"when": "2026-03-09 12:30"}, RejectionReason.TAP_IN_FUTURE),
        ({"when": "2025-12-31 08:00"}, RejectionReason.NO_RULES_IN_FORCE),
        ({"mode": "metro"}, RejectionReason.MODE_NOT_SERVED),
    ],
)
def test_taps_the_domain_cannot_price_are_rejected_with_a_reason(
    change: dict[str, str], reason: RejectionReason
) -> None:
    travel = _travel()
    args: dict[str, Any] = {"when": "2026-03-02 08:00", "mode": "bus", "card": CARD} | change

    with pytest.raises(TransitRejection) as caught:
        travel.record_tap(tap("x", args["when"], mode=args["mode"], card=args["card"]),
                          rulebook(late_upload_days=366), NOW)

    assert caught.value.reason is reason
    assert travel.rides == {}
    assert travel.version == 0


def test_a_tap_of_a_week_closed_for_late_uploads_is_rejected() -> None:
    travel = _travel()

    with pytest.raises(TransitRejection) as caught:
        travel.record_tap(tap("old", "2026-02-16 08:00"), rulebook(late_upload_days=7), NOW)

    assert caught.value.reason is RejectionReason.WEEK_CLOSED


def test_rides_of_closed_weeks_are_forgotten_but_the_totals_still_balance() -> None:
    rules = rulebook(late_upload_days=7)
    travel = _travel()
    travel.record_tap(tap("a", "2026-02-23 08:00"), rules, local("2026-02-23 09:00"))

    travel.record_tap(tap("b", "2026-03-09 08:00"), rules, NOW)

    assert set(travel.rides) == {"b"}
    assert travel.net_charged == travel.priced_total == 2 * FULL


def test_a_declined_fare_puts_the_card_on_the_deny_list_once() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_tap(tap("b", "2026-03-02 12:00"), rulebook(), NOW)

    first = travel.record_fare_declined("a", FULL, NOW)
    second = travel.record_fare_declined("b", FULL, NOW)
    repeated = travel.record_fare_declined("a", FULL, NOW)

    assert first.events == (CardDenied(CARD, FULL, ("a",), NOW),)
    assert second.events == ()
    # a replayed deny-list entry would overwrite the card's current state: not repeated
    assert repeated.duplicate and repeated.events == ()
    assert travel.denied
    assert travel.debt == 2 * FULL


def test_a_settled_debt_takes_the_card_off_the_deny_list() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_fare_declined("a", FULL, NOW)

    allowed = travel.record_debt_settled("topup-1", NOW)
    repeated = travel.record_debt_settled("topup-1", NOW)

    assert allowed.events == (CardAllowed(CARD, NOW),)
    assert repeated.duplicate and repeated.events == ()
    assert not travel.denied
    assert travel.debt == 0


def test_the_fares_a_top_up_paid_count_as_debited_once_the_debt_is_settled() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_tap(tap("b", "2026-03-02 12:00"), rulebook(), NOW)
    travel.record_fare_debited("a", FULL, NOW)
    travel.record_fare_declined("b", FULL, NOW)

    travel.record_debt_settled("topup-1", NOW, paid_rides=["b", "unknown-ride"])

    assert [travel.rides[r].debit_status for r in ("a", "b")] == [DebitStatus.DEBITED] * 2
    assert not travel.denied and travel.debt == 0


def test_a_refund_of_an_unpaid_ride_cancels_its_debt_and_lifts_the_denial() -> None:
    travel = _travel()
    travel.record_tap(tap("b", "2026-03-02 08:30", "7"), rulebook(), NOW)
    travel.record_fare_declined("b", FULL, NOW)

    outcome = travel.record_tap(tap("a", "2026-03-02 08:00", "12"), rulebook(), NOW)

    [refund] = _of(outcome.events, FareRefundIssued)
    assert refund.against_debt == FULL
    assert _of(outcome.events, CardAllowed) == [CardAllowed(CARD, NOW)]
    assert travel.debt == 0


def test_a_decline_that_arrives_after_a_late_tap_lowered_the_fare_is_no_new_debt() -> None:
    """The decline and the correction crossed: the refund already went to wallet, which
    wrote its owed fare down; transit must not recreate the debt from the old amount."""
    travel = _travel()
    travel.record_tap(tap("b", "2026-03-02 08:30", "7"), rulebook(), NOW)
    late = travel.record_tap(tap("a", "2026-03-02 08:00", "12", offline=True), rulebook(), NOW)
    [refund] = _of(late.events, FareRefundIssued)
    assert (refund.ride_id, refund.amount, refund.against_debt) == ("b", FULL, 0)

    declined = travel.record_fare_declined("b", FULL, NOW)

    assert declined.events == ()
    assert not travel.denied and travel.debt == 0


@pytest.mark.parametrize("reason", ["card_blocked", "unknown_card", "account_closed"])
def test_a_fare_declined_for_another_reason_than_money_is_no_debt(reason: str) -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    outcome = travel.record_fare_declined("a", FULL, NOW, reason)

    assert outcome.events == ()
    assert not travel.denied and travel.debt == 0
    assert travel.rides["a"].debit_status is DebitStatus.DECLINED


def test_a_blocked_card_is_denied_and_unblocking_lifts_it_only_when_nothing_is_owed() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    blocked = travel.set_blocked(True, NOW)
    again = travel.set_blocked(True, NOW)
    travel.record_fare_declined("a", FULL, NOW)
    unblocked = travel.set_blocked(False, NOW)
    still_denied = travel.denied  # it still owes the fare
    settled = travel.record_debt_settled("topup-1", NOW)

    assert blocked.events == (CardDenied(CARD, 0, (), NOW, blocked=True),)
    assert again.events == ()
    # the entry is restated with the reason that remains: the debt, no longer the block
    assert unblocked.events == (CardDenied(CARD, FULL, ("a",), NOW),) and still_denied
    assert settled.events == (CardAllowed(CARD, NOW),) and not travel.denied


def test_a_settled_debt_does_not_lift_the_denial_of_a_blocked_card() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    travel.record_fare_declined("a", FULL, NOW)
    travel.set_blocked(True, NOW)

    settled = travel.record_debt_settled("topup-1", NOW)

    assert settled.events == () and travel.denied


def test_a_card_that_never_rode_is_denied_while_blocked() -> None:
    assert untravelled_card_blocked(CARD, True, NOW) == (
        CardDenied(CARD, 0, (), NOW, blocked=True),)
    assert untravelled_card_blocked(CARD, False, NOW) == (CardAllowed(CARD, NOW),)


@pytest.mark.parametrize(
    ("first", "second"),
    [("debited", "declined"), ("declined", "debited")],
)
def test_contradicting_debit_outcomes_are_explicit_conflicts(first: str, second: str) -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)
    record = {"debited": travel.record_fare_debited, "declined": travel.record_fare_declined}
    record[first]("a", FULL, NOW)

    with pytest.raises(TransitRejection) as caught:
        record[second]("a", FULL, NOW)

    assert caught.value.reason is RejectionReason.DEBIT_OUTCOME_CONFLICT


def test_a_debit_outcome_with_another_amount_is_a_conflict() -> None:
    travel = _travel()
    travel.record_tap(tap("a", "2026-03-02 08:00"), rulebook(), NOW)

    with pytest.raises(TransitRejection) as caught:
        travel.record_fare_debited("a", FULL + 1, NOW)

    assert caught.value.reason is RejectionReason.DEBIT_OUTCOME_CONFLICT


def test_the_concession_expiry_reminder_is_emitted_once_per_expiry_date() -> None:
    travel = _travel()
    travel.set_concession(ConcessionEligibility(date(2026, 3, 14)))
    rules = rulebook(reminder_days=7)

    too_early = travel.remind_concession_expiry(rules, local("2026-03-06 09:00"))
    due = travel.remind_concession_expiry(rules, local("2026-03-07 09:00"))
    again = travel.remind_concession_expiry(rules, local("2026-03-08 09:00"))
    travel.set_concession(ConcessionEligibility(date(2026, 3, 20)))
    renewed = travel.remind_concession_expiry(rules, local("2026-03-13 09:00"))

    assert too_early.events == () and again.events == ()
    assert due.events == (ConcessionExpiryReminded(CARD, date(2026, 3, 14), 7,
                                                   local("2026-03-07 09:00")),)
    assert renewed.events == (ConcessionExpiryReminded(CARD, date(2026, 3, 20), 7,
                                                       local("2026-03-13 09:00")),)


def test_a_card_travel_survives_a_round_trip_through_a_bson_friendly_document() -> None:
    travel = _travel()
    travel.set_concession(ConcessionEligibility(date(2026, 3, 2), valid_from=date(2025, 9, 1)))
    for t in (tap("b", "2026-03-02 08:30", "7"), tap("a", "2026-03-02 08:00", "1"),
              tap("c", "2026-03-03 10:00", "1", mode="minibus")):
        travel.record_tap(t, rulebook(), NOW)
    travel.record_fare_declined("c", 4000, NOW)
    travel.record_debt_settled("s-1", NOW)

    doc = travel.to_doc()

    _assert_bson_friendly(doc)
    restored = CardTravel.from_doc(doc)
    assert restored == travel
    assert restored.to_doc() == doc
    assert restored.record_tap(tap("a", "2026-03-02 08:00", "1"), rulebook(), NOW).duplicate


def test_operations_reject_a_naive_clock() -> None:
    with pytest.raises(TransitRejection) as caught:
        _travel().record_debt_settled("s", datetime(2026, 3, 9, 12, 0))

    assert caught.value.reason is RejectionReason.NAIVE_CLOCK


def test_the_aggregate_matches_pricing_the_same_taps_in_order() -> None:
    taps: list[Tap] = [tap("c", "2026-03-02 09:10", "3"), tap("a", "2026-03-02 08:00", "1"),
                       tap("b", "2026-03-02 08:50", "2")]
    travel = _travel()
    for t in taps:
        travel.record_tap(t, rulebook(daily=5000), NOW)

    expected = {p.tap.tap_id: p.fare for p in price_taps(taps, rulebook(daily=5000), None)}

    assert {k: r.fare for k, r in travel.rides.items()} == expected
    assert travel.net_charged == sum(expected.values())


def _assert_bson_friendly(value: Any) -> None:
    if isinstance(value, dict):
        assert all(isinstance(k, str) and "." not in k and not k.startswith("$") for k in value)
        for item in value.values():
            _assert_bson_friendly(item)
    elif isinstance(value, list):
        for item in value:
            _assert_bson_friendly(item)
    elif isinstance(value, datetime):
        offset = value.utcoffset()
        assert offset is not None and offset.total_seconds() == 0
    else:
        assert value is None or type(value) in (str, int, bool), repr(value)
