"""The decisions a wallet handler only maps: what becomes of a payment, what answers a sale or
a fare."""

from __future__ import annotations

import pytest

from contracts.money import MAX_AMOUNT
from services.wallet.domain import (
    PAYMENT_ID_CONFLICT,
    Account,
    DeclineReason,
    FareDebited,
    FareDeclined,
    FareRefunded,
    SaleApproved,
    SaleDeclined,
    TopUpCredited,
    TopUpVerdict,
    receive_top_up,
    reissue_card,
)
from tests.unit.wallet.wallet_builders import at, funded, meal, new_account

pytestmark = pytest.mark.unit


def closed_account() -> Account:
    account = funded(general=100_00)
    reissue_card(account, reissue_id="r1", new_contract="40099999", new_card_uid="04FF",
                 now=at())
    account.pull_events()
    return account


# --- top-ups -----------------------------------------------------------------------------------

def test_a_payment_id_reused_elsewhere_is_rejected_without_touching_the_account() -> None:
    account = new_account()
    version = account.version
    decision = receive_top_up(account, "pay-1", 500_00, payment_id_reused=True, now=at())
    assert (decision.verdict, decision.rejection) == (TopUpVerdict.REJECTED, PAYMENT_ID_CONFLICT)
    assert account.version == version and account.balances.general == 0


def test_a_payment_for_a_contract_not_opened_yet_is_parked() -> None:
    decision = receive_top_up(None, "pay-1", 500_00, payment_id_reused=False, now=at())
    assert decision.verdict is TopUpVerdict.PARKED and decision.resend == ()


def test_a_new_payment_is_credited_and_its_event_is_left_pending() -> None:
    account = new_account()
    account.pull_events()
    decision = receive_top_up(account, "pay-1", 500_00, payment_id_reused=False, now=at())
    assert decision.verdict is TopUpVerdict.CREDITED and decision.resend == ()
    assert account.balances.general == 500_00
    assert [type(e) for e in account.pull_events()] == [TopUpCredited]


def test_a_payment_credited_before_is_replayed_with_the_event_first_recorded() -> None:
    account = new_account()
    account.pull_events()
    receive_top_up(account, "pay-1", 500_00, payment_id_reused=False, now=at())
    (first,) = account.pull_events()
    decision = receive_top_up(account, "pay-1", 500_00, payment_id_reused=False, now=at(30))
    assert decision.verdict is TopUpVerdict.REPLAYED
    assert decision.resend == (first,)
    assert account.balances.general == 500_00 and account.pull_events() == []


def test_a_payment_id_repeated_with_another_amount_is_a_payment_id_conflict() -> None:
    account = new_account()
    receive_top_up(account, "pay-1", 500_00, payment_id_reused=False, now=at())
    decision = receive_top_up(account, "pay-1", 400_00, payment_id_reused=False, now=at(1))
    assert (decision.verdict, decision.rejection) == (TopUpVerdict.REJECTED, PAYMENT_ID_CONFLICT)
    assert account.balances.general == 500_00


def test_a_payment_to_a_closed_account_is_rejected_with_the_refusal_reason() -> None:
    decision = receive_top_up(closed_account(), "pay-9", 100_00, payment_id_reused=False,
                              now=at(5))
    assert (decision.verdict, decision.rejection) == (TopUpVerdict.REJECTED, "account_closed")


# --- sales -------------------------------------------------------------------------------------

def test_a_new_sale_is_decided_at_the_tills_time_and_its_event_is_left_pending() -> None:
    account = funded(general=200_00)
    decision = account.decide_sale("s1", terminal_id="t1", items=[meal()], sold_at=at(1),
                                   now=at(60))
    assert decision.result.approved and not decision.result.replayed
    assert decision.decided_at == at(1) and decision.resend == ()
    assert [type(e) for e in account.pull_events()] == [SaleApproved]


def test_a_till_clock_running_ahead_counts_no_later_than_now() -> None:
    account = funded(general=200_00)
    decision = account.decide_sale("s1", terminal_id="t1", items=[meal()], sold_at=at(90),
                                   now=at(10))
    assert decision.decided_at == at(10) and account.sales["s1"].at == at(10)


def test_a_sale_decided_before_is_answered_with_the_recorded_decision() -> None:
    account = funded(general=50_00)
    first = account.decide_sale("s1", terminal_id="t1", items=[meal()], sold_at=at(1),
                                now=at(1))
    (declined,) = account.pull_events()
    again = account.decide_sale("s1", terminal_id="t1", items=[meal()], sold_at=at(1),
                                now=at(30))
    assert isinstance(declined, SaleDeclined) and not first.result.approved
    assert again.result.replayed and again.result == first.result
    assert again.resend == (declined,) and again.decided_at == at(1)
    assert account.pull_events() == []


def test_a_sale_on_a_closed_account_is_declined_now_without_a_record() -> None:
    account = closed_account()
    decision = account.decide_sale("s1", terminal_id="t1", items=[meal(85_00)],
                                   sold_at=at(1), now=at(20))
    (event,) = decision.resend
    assert isinstance(event, SaleDeclined)
    assert (event.reason, event.total, event.at) == (DeclineReason.ACCOUNT_CLOSED, 85_00, at(20))
    assert decision.decided_at == at(20) and "s1" not in account.sales


# --- fares -------------------------------------------------------------------------------------

def test_a_new_fare_leaves_its_event_pending_and_a_repeat_resends_it() -> None:
    account = funded(transit=100_00)
    first = account.decide_fare("ride-1", 35_00, now=at(1))
    (debited,) = account.pull_events()
    again = account.decide_fare("ride-1", 35_00, now=at(40))
    assert first.resend == () and isinstance(debited, FareDebited)
    assert again.result.replayed and again.resend == (debited,)
    assert account.balances.transit == 65_00


def test_a_fare_on_a_closed_account_is_declined_now_without_a_record() -> None:
    account = closed_account()
    decision = account.decide_fare("ride-1", 35_00, now=at(20))
    (event,) = decision.resend
    assert isinstance(event, FareDeclined)
    assert (event.reason, event.amount, event.at) == (DeclineReason.ACCOUNT_CLOSED, 35_00, at(20))
    assert "ride-1" not in account.rides


def test_a_replayed_fare_correction_that_paid_back_resends_its_refund() -> None:
    account = funded(transit=100_00)
    account.decide_fare("ride-1", 35_00, now=at(1))
    first = account.correct_fare("c-1", "ride-1", 10_00, now=at(2))
    refunded = [e for e in account.pull_events() if isinstance(e, FareRefunded)]
    again = account.correct_fare("c-1", "ride-1", 10_00, now=at(50))
    assert first.resend == () and len(refunded) == 1
    assert again.result.replayed and again.resend == tuple(refunded)
    assert account.balances.transit == 75_00


def test_a_top_up_that_would_lift_a_balance_past_the_largest_amount_is_rejected_unchanged() -> None:
    # The fuzz suite's long run found it: a thousand valid top-ups of up to 100 million roubles
    # each filled one pocket past the wire's bound and wallet crashed on every later message.
    account = new_account()
    receive_top_up(account, "pay-1", MAX_AMOUNT - 100, payment_id_reused=False, now=at())
    account.pull_entries()
    before = account.balances
    decision = receive_top_up(account, "pay-2", 101, payment_id_reused=False, now=at())
    assert (decision.verdict, decision.rejection) == (TopUpVerdict.REJECTED, "balance_limit")
    assert account.balances == before and account.pull_entries() == []
    exact = receive_top_up(account, "pay-3", 100, payment_id_reused=False, now=at())
    assert exact.verdict is TopUpVerdict.CREDITED
    assert account.balances.general == MAX_AMOUNT
