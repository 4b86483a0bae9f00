"""The rules of autopay by date, the transit payments switch and applications, without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.wallet.domain import (
    AccountStatus,
    Application,
    ApplicationDecision,
    ApplicationKind,
    ApplicationReason,
    ApplicationStatus,
    AutoTopUpCancelled,
    AutoTopUpFailed,
    AutoTopUpRequested,
    AutoTopUpSettings,
    DeclineReason,
    ScheduleAction,
    ScheduledTopUp,
    SubBalance,
    TopUpChannel,
    WalletRejected,
    done_by_reissue,
    reissue_card,
)
from tests.unit.wallet.wallet_builders import CONTRACT, assert_ledger_consistent, funded, meal

pytestmark = pytest.mark.unit

# 10:00 in Yekaterinburg (UTC+5) on 2026-09-01 (a due date when the 1st is chosen).
SEPT_1 = datetime(2026, 9, 1, 5, 0, tzinfo=UTC)


def day(n: int, hour_utc: int = 5) -> datetime:
    """``n`` days after 1 September 2026, at ``hour_utc`` UTC."""
    return SEPT_1.replace(hour=hour_utc) + timedelta(days=n)


def requests(events: list[object]) -> list[AutoTopUpRequested]:
    return [e for e in events if isinstance(e, AutoTopUpRequested)]


# --- the calendar ---------------------------------------------------------------------------

def test_due_dates_take_the_last_day_of_a_month_that_lacks_the_chosen_day():
    plan = ScheduledTopUp((15, 31), 100_00, SubBalance.CANTEEN, covered_through="2027-01-31")
    assert plan.due_dates(date(2027, 4, 30)) == [
        date(2027, 2, 15), date(2027, 2, 28), date(2027, 3, 15), date(2027, 3, 31),
        date(2027, 4, 15), date(2027, 4, 30)]


@pytest.mark.parametrize("days", [[], [0], [32], [1, 5, 10, 15, 20]])
def test_a_plan_needs_one_to_four_days_of_the_month(days):
    account = funded()
    with pytest.raises(WalletRejected) as refused:
        account.set_scheduled_top_up(days, 100_00, SubBalance.CANTEEN, now=SEPT_1)
    assert refused.value.reason.value == "invalid_setting"


# --- asking on the due date -------------------------------------------------------------------

def test_a_due_date_is_asked_once_with_the_child_and_date_in_its_request_id():
    account = funded()
    account.set_scheduled_top_up([1, 15], 1_500_00, SubBalance.CANTEEN, now=day(-1))
    account.pull_events()
    asked = account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3)
    assert asked is not None and asked.request_id == f"sched-{CONTRACT}-2026-09-01"
    [request] = requests(account.pull_events())
    assert (request.amount, request.sub_balance, request.reason, request.due_date) == (
        1_500_00, SubBalance.CANTEEN, "schedule", "2026-09-01")
    # later the same day, and the next days: nothing more until the 15th
    for n in (0, 1, 13):
        assert account.ask_scheduled_top_up(now=day(n, 12), catch_up_days=3) is None
    assert requests(account.pull_events()) == []
    assert account.ask_scheduled_top_up(now=day(14), catch_up_days=3) is not None
    assert [r.due_date for r in requests(account.pull_events())] == ["2026-09-15"]


def test_the_due_date_begins_at_the_schools_midnight():
    account = funded()
    account.set_scheduled_top_up([2], 100_00, SubBalance.CANTEEN, now=SEPT_1)
    # 2 September 00:00 in Yekaterinburg is 1 September 19:00 UTC
    assert account.next_scheduled_due_at() == datetime(2026, 9, 1, 19, 0, tzinfo=UTC)
    assert account.ask_scheduled_top_up(now=datetime(2026, 9, 1, 18, 59, tzinfo=UTC),
                                        catch_up_days=3) is None
    assert account.ask_scheduled_top_up(now=datetime(2026, 9, 1, 19, 0, tzinfo=UTC),
                                        catch_up_days=3) is not None


def test_setting_a_plan_asks_from_today_and_a_changed_plan_never_asks_a_date_again():
    account = funded()
    account.set_scheduled_top_up([1], 100_00, SubBalance.CANTEEN, now=SEPT_1)
    assert account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3) is not None
    account.set_scheduled_top_up([1, 2], 200_00, SubBalance.GENERAL, now=day(0, 10))
    account.pull_events()
    assert account.ask_scheduled_top_up(now=day(0, 11), catch_up_days=3) is None  # the 1st: done
    assert account.ask_scheduled_top_up(now=day(1), catch_up_days=3) is not None
    [request] = requests(account.pull_events())
    assert (request.due_date, request.amount, request.sub_balance) == (
        "2026-09-02", 200_00, SubBalance.GENERAL)


def test_a_due_date_missed_by_an_outage_is_asked_once_when_recent_and_skipped_when_old():
    account = funded()
    account.set_scheduled_top_up([1, 15], 100_00, SubBalance.CANTEEN, now=day(-1))
    account.pull_events()
    # down from before the 1st until the 3rd: the 1st is asked once, on coming back
    assert account.ask_scheduled_top_up(now=day(2), catch_up_days=3) is not None
    assert [r.due_date for r in requests(account.pull_events())] == ["2026-09-01"]
    # down from the 14th until 20 September: the 15th is older than three days, not asked
    assert account.ask_scheduled_top_up(now=day(19), catch_up_days=3) is None
    assert requests(account.pull_events()) == []
    assert account.scheduled_top_up is not None
    assert account.scheduled_top_up.covered_through == "2026-09-20"


def test_after_a_long_outage_only_the_latest_missed_date_may_be_asked():
    account = funded()
    account.set_scheduled_top_up([1, 15], 100_00, SubBalance.CANTEEN, now=day(-1))
    account.pull_events()
    # back on 16 October: 1 Sep, 15 Sep, 1 Oct missed long ago; 15 Oct is one day old
    assert account.ask_scheduled_top_up(now=day(45), catch_up_days=3) is not None
    assert [r.due_date for r in requests(account.pull_events())] == ["2026-10-15"]


def test_a_paused_plan_asks_nothing_and_resumed_skips_the_dates_that_fell_while_paused():
    account = funded()
    account.set_scheduled_top_up([1, 15], 100_00, SubBalance.CANTEEN, now=day(-1))
    account.switch_scheduled_top_up(ScheduleAction.PAUSE, now=day(-1))
    account.pull_events()
    assert account.next_scheduled_due_at() is None
    assert account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3) is None
    account.switch_scheduled_top_up(ScheduleAction.RESUME, now=day(2))
    assert account.ask_scheduled_top_up(now=day(2), catch_up_days=3) is None  # 1st: paused
    assert account.ask_scheduled_top_up(now=day(14), catch_up_days=3) is not None
    assert account.switch_scheduled_top_up(ScheduleAction.REMOVE, now=day(15))
    assert account.scheduled_top_up is None and account.next_scheduled_due_at() is None
    with pytest.raises(WalletRejected) as refused:
        account.switch_scheduled_top_up(ScheduleAction.PAUSE, now=day(15))
    assert refused.value.reason.value == "unknown_schedule"


def test_a_scheduled_payment_answers_its_request_not_the_threshold_one():
    account = funded(canteen=100_00)
    account.set_scheduled_top_up([1], 500_00, SubBalance.CANTEEN, now=day(-1))
    account.set_auto_top_up(AutoTopUpSettings(True, 200_00, 300_00, SubBalance.CANTEEN),
                            now=day(-1))  # below the threshold: asks at once
    threshold = account.auto_top_up_pending
    asked = account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3)
    assert threshold is not None and asked is not None
    account.top_up("pay-sched", 500_00, now=SEPT_1, sub_balance=SubBalance.CANTEEN,
                   channel=TopUpChannel.AUTO_TOP_UP, auto_top_up_request_id=asked.request_id)
    assert account.auto_top_up_pending == threshold


def test_a_failed_scheduled_payment_is_told_to_the_parent_once():
    account = funded()
    account.set_scheduled_top_up([1], 500_00, SubBalance.CANTEEN, now=day(-1))
    asked = account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3)
    assert asked is not None
    account.pull_events()
    assert account.cancel_auto_top_up(asked.request_id, reason="card_declined", now=SEPT_1)
    assert not account.cancel_auto_top_up(asked.request_id, reason="card_declined", now=SEPT_1)
    [failed] = [e for e in account.pull_events() if isinstance(e, AutoTopUpFailed)]
    assert (failed.request_id, failed.amount, failed.reason) == (
        asked.request_id, 500_00, "card_declined")


def test_a_blocked_card_lets_its_due_date_pass_without_asking():
    account = funded()
    account.set_scheduled_top_up([1], 500_00, SubBalance.CANTEEN, now=day(-1))
    account.block_card(now=day(-1))
    account.pull_events()
    assert account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3) is None
    assert requests(account.pull_events()) == []
    assert account.next_scheduled_due_at() is not None  # next month's 1st


# --- services on/off --------------------------------------------------------------------------

def test_transit_payments_off_declines_fares_with_its_reason_and_owes_nothing():
    account = funded(transit=500_00)
    assert account.set_transit_payments(False, now=SEPT_1)
    assert not account.set_transit_payments(False, now=SEPT_1)  # repeated: no change
    fare = account.debit_fare("ride-1", 40_00, now=SEPT_1)
    assert (fare.approved, fare.reason) == (False, DeclineReason.TRANSIT_PAYMENTS_OFF)
    assert account.balances.transit == 500_00 and not account.fares_unpaid
    account.set_transit_payments(True, now=SEPT_1)
    assert account.debit_fare("ride-2", 40_00, now=SEPT_1).approved


# --- applications -----------------------------------------------------------------------------

def _apply(kind: ApplicationKind = ApplicationKind.REFUND,
           reason: ApplicationReason = ApplicationReason.LEAVING_SCHOOL,
           others: tuple[Application, ...] = ()) -> Application:
    return Application.submit("app-1", contract=CONTRACT, school_id="izh-school-42", kind=kind,
                              reason=reason, comment="Переезжаем", by="acc_parent0001",
                              now=SEPT_1, others=others)


def test_an_application_moves_submitted_accepted_done_and_each_change_is_an_event():
    app = _apply(ApplicationKind.NEW_CARD, ApplicationReason.LOST)
    assert app.decide(ApplicationDecision.ACCEPT, by="admin", comment="", now=day(1)) \
        is ApplicationStatus.ACCEPTED
    assert app.decide(ApplicationDecision.ACCEPT, by="admin", comment="", now=day(1)) is None
    assert app.decide(ApplicationDecision.DONE, by="admin", comment="Готова", now=day(2)) \
        is ApplicationStatus.DONE
    assert [e.status for e in app.pull_events()] == [
        ApplicationStatus.SUBMITTED, ApplicationStatus.ACCEPTED, ApplicationStatus.DONE]
    assert app.staff_comment == "Готова"
    with pytest.raises(WalletRejected) as closed:
        app.decide(ApplicationDecision.REFUSE, by="admin", comment="нет", now=day(3))
    assert closed.value.reason.value == "application_closed"


def test_a_refusal_needs_a_comment_and_a_reason_must_fit_the_kind():
    app = _apply()
    with pytest.raises(WalletRejected) as refused:
        app.decide(ApplicationDecision.REFUSE, by="admin", comment="  ", now=day(1))
    assert refused.value.reason.value == "comment_required"
    with pytest.raises(WalletRejected) as invalid:
        _apply(ApplicationKind.REFUND, ApplicationReason.LOST)
    assert invalid.value.reason.value == "invalid_application"


def test_a_reissue_finishes_the_open_new_card_application_and_nothing_else():
    submitted = _apply(ApplicationKind.NEW_CARD, ApplicationReason.LOST)
    accepted = Application.submit(
        "app-2", contract=CONTRACT, school_id="izh-school-42", kind=ApplicationKind.NEW_CARD,
        reason=ApplicationReason.DAMAGED, comment="", by="acc_parent0001", now=SEPT_1)
    accepted.decide(ApplicationDecision.ACCEPT, by="admin", comment="", now=day(1))
    refund = Application.submit(
        "app-3", contract=CONTRACT, school_id="izh-school-42", kind=ApplicationKind.REFUND,
        reason=ApplicationReason.OTHER, comment="", by="acc_parent0001", now=SEPT_1)
    refused = Application.submit(
        "app-4", contract=CONTRACT, school_id="izh-school-42", kind=ApplicationKind.NEW_CARD,
        reason=ApplicationReason.OTHER, comment="", by="acc_parent0001", now=SEPT_1)
    refused.decide(ApplicationDecision.REFUSE, by="admin", comment="Карта найдена", now=day(1))
    for app in (submitted, accepted, refund, refused):
        app.pull_events()

    done = done_by_reissue([submitted, accepted, refund, refused], now=day(2))
    again = done_by_reissue([submitted, accepted, refund, refused], now=day(3))

    assert done == [submitted, accepted] and again == []
    assert [(a.status, a.staff_comment) for a in done] == [
        (ApplicationStatus.DONE, "new card issued")] * 2
    assert [e.status for a in done for e in a.pull_events()] == [ApplicationStatus.DONE] * 2
    assert (refund.status, refused.status) == (ApplicationStatus.SUBMITTED,
                                              ApplicationStatus.REFUSED)


def test_one_open_application_of_a_kind_per_child():
    first = _apply()
    with pytest.raises(WalletRejected) as refused:
        Application.submit("app-2", contract=CONTRACT, school_id="izh-school-42",
                           kind=ApplicationKind.REFUND, reason=ApplicationReason.OTHER,
                           comment="", by="p", now=SEPT_1, others=(first,))
    assert refused.value.reason.value == "application_open"
    first.decide(ApplicationDecision.REFUSE, by="admin", comment="Долг", now=day(1))
    Application.submit("app-2", contract=CONTRACT, school_id="izh-school-42",
                       kind=ApplicationKind.REFUND, reason=ApplicationReason.OTHER,
                       comment="", by="p", now=SEPT_1, others=(first,))


def test_a_payout_zeroes_every_money_balance_once_and_closes_the_account():
    account = funded(general=100_00, canteen=250_50, transit=40_00)
    entries = account.pull_entries()
    paid = account.pay_out("app-1", now=SEPT_1)
    entries += account.pull_entries()
    assert paid == 390_50
    assert (account.balances.general, account.balances.canteen, account.balances.transit) == (
        0, 0, 0)
    assert account.status is AccountStatus.CLOSED
    assert {e.account for e in entries if e.operation_id == "app-1"} == {
        CONTRACT, "external:payout"}
    assert_ledger_consistent(account, entries)
    with pytest.raises(WalletRejected) as again:
        account.pay_out("app-1", now=SEPT_1)
    assert again.value.reason.value == "account_closed"


def test_no_payout_while_the_child_owes_money():
    account = funded(grace=100_00)
    account.sale("sale-1", terminal_id="till", items=[meal(50_00)], now=SEPT_1)
    assert account.grace_debt > 0
    with pytest.raises(WalletRejected) as refused:
        account.pay_out("app-1", now=SEPT_1)
    assert refused.value.reason.value == "debt_outstanding"


def test_a_reissue_withdraws_the_pending_due_date_and_the_new_card_keeps_the_plan():
    account = funded(canteen=100_00)
    account.set_scheduled_top_up([1, 15], 500_00, SubBalance.CANTEEN, now=day(-1))
    asked = account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3)
    assert asked is not None
    account.pull_events()
    outcome = reissue_card(account, reissue_id="reissue-1", new_contract="40012399",
                           new_card_uid="04A2B3C4D5E6F8", now=day(1), school_id="izh-school-42",
                           time_zone=account.time_zone)
    cancelled = [e for e in account.pull_events() if isinstance(e, AutoTopUpCancelled)]
    assert [e.request_id for e in cancelled] == [asked.request_id]
    new = outcome.new_account
    assert new is not None and new.scheduled_top_up is not None
    assert new.ask_scheduled_top_up(now=day(2), catch_up_days=3) is None  # the 1st: asked
    assert new.ask_scheduled_top_up(now=day(14), catch_up_days=3) is not None


def test_a_payout_withdraws_the_pending_planned_payments():
    account = funded(canteen=100_00)
    account.set_scheduled_top_up([1], 500_00, SubBalance.CANTEEN, now=day(-1))
    asked = account.ask_scheduled_top_up(now=SEPT_1, catch_up_days=3)
    assert asked is not None
    account.pay_out("app-1", now=SEPT_1)
    cancelled = [e for e in account.pull_events() if isinstance(e, AutoTopUpCancelled)]
    assert [e.request_id for e in cancelled] == [asked.request_id]
    assert account.next_scheduled_due_at() is None


def test_a_retried_application_is_the_same_one_and_other_content_is_a_conflict():
    first = _apply()
    first.pull_events()
    again = Application.submit("app-1", contract=CONTRACT, school_id="izh-school-42",
                               kind=ApplicationKind.REFUND,
                               reason=ApplicationReason.LEAVING_SCHOOL, comment="", by="p",
                               now=day(1), others=(first,), existing=first)
    assert again is first and again.pull_events() == []
    with pytest.raises(WalletRejected) as conflict:
        Application.submit("app-1", contract=CONTRACT, school_id="izh-school-42",
                           kind=ApplicationKind.NEW_CARD, reason=ApplicationReason.LOST,
                           comment="", by="p", now=day(1), existing=first)
    assert conflict.value.reason.value == "idempotency_conflict"
