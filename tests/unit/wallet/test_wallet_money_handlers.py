"""wallet's handlers for autopay by date, the services switches and applications, over the
in-memory fakes: replies, error codes, emitted events and the state they leave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import integrations as integ
from contracts import transit
from contracts import wallet as wire
from contracts.auth import ChildGrant, Role
from contracts.envelope import CommandAccepted, ErrorReply
from services.wallet.handlers import Handlers
from services.wallet.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

NOW = datetime(2026, 8, 31, 5, 0, tzinfo=UTC)  # 10:00 in Yekaterinburg, the day before the 1st
SCHOOL = "izh-school-42"
CONTRACT = "40012345"
CARD = "04A2B3C4D5E6F7"
TZ = "Asia/Yekaterinburg"


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


async def _wallet(balance: int = 0) -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("wallet", Settings, now=NOW)
    h = Handlers(rt)
    await h.on_card_issued(rt.inbound(integ.CardIssued(
        contract=CONTRACT, card_uid=CARD, school_id=SCHOOL, school_tz=TZ,
        student_id=f"stu-{CONTRACT}", class_name="5Б", birth_date="2014-03-08",
        issued_at=NOW - timedelta(days=1)), key=CONTRACT))
    if balance:
        await h.on_top_up(rt.inbound(integ.TopUpReceived(
            payment_id="pay-seed", contract=CONTRACT, amount=balance, sub_balance="canteen",
            channel="bank_card", paid_at=NOW), key=CONTRACT))
    rt.fake_uow.sent.clear()
    rt.fake_uow.replies.clear()
    return rt, h


def _parent(rt: FakeRuntime, role: str = "primary") -> str:
    return rt.token(Role.PARENT, children=[ChildGrant(contract=CONTRACT, role=role)])


def _admin(rt: FakeRuntime, school: str = SCHOOL) -> str:
    return rt.token(Role.SCHOOL_ADMIN, account_id="acc_staff00001", school_id=school)


def _last_reply(rt: FakeRuntime) -> object:
    return rt.replies()[-1]


def _error(rt: FakeRuntime) -> str:
    reply = _last_reply(rt)
    assert isinstance(reply, ErrorReply) and reply.error is not None, reply
    return reply.error.code


async def _settings(rt: FakeRuntime, h: Handlers) -> wire.PaymentSettingsReply:
    await h.on_get_payment_settings(rt.inbound(wire.GetPaymentSettings(contract=CONTRACT),
                                               token=_parent(rt, "co_guardian")))
    reply = _last_reply(rt)
    assert isinstance(reply, wire.PaymentSettingsReply), reply
    return reply


# --- autopay by date --------------------------------------------------------------------------

async def test_the_scheduler_asks_each_due_date_once_across_ticks_and_redeliveries():
    rt, h = await _wallet()
    msg = rt.inbound(wire.SetScheduledTopUp(request_id="s-1", contract=CONTRACT,
                                            days_of_month=[1, 15], amount=1_500_00),
                     token=_parent(rt))
    await h.on_set_scheduled_top_up(msg)
    assert isinstance(_last_reply(rt), CommandAccepted)
    await rt.redelivered_changes_nothing(h.on_set_scheduled_top_up, msg)
    settings = await _settings(rt, h)
    assert settings.scheduled_top_up is not None
    assert (settings.scheduled_top_up.days_of_month, settings.scheduled_top_up.next_due_date) == (
        [1, 15], "2026-09-01")
    assert await h.ask_scheduled_top_ups() == 0  # not yet the 1st
    rt.now = NOW + timedelta(days=1)
    assert await h.ask_scheduled_top_ups() == 1
    assert await h.ask_scheduled_top_ups() == 0  # a second tick, or another instance
    [asked] = rt.emitted(wire.AutoTopUpRequested)
    assert (asked.request_id, asked.amount, asked.reason, asked.due_date) == (
        f"sched-{CONTRACT}-2026-09-01", 1_500_00, wire.AutoTopUpReason.SCHEDULE, "2026-09-01")
    [record] = [r for r in rt.fake_uow.sent if isinstance(r.message, wire.AutoTopUpRequested)]
    assert (record.topic, record.key) == ("wallet.auto-topup-requests.v1", CONTRACT)


async def test_a_paused_schedule_is_not_asked_and_the_switches_need_the_primary_guardian():
    rt, h = await _wallet()
    await h.on_set_scheduled_top_up(rt.inbound(wire.SetScheduledTopUp(
        request_id="s-1", contract=CONTRACT, days_of_month=[1], amount=500_00),
        token=_parent(rt)))
    await h.on_change_scheduled_top_up(rt.inbound(wire.ChangeScheduledTopUp(
        request_id="s-2", contract=CONTRACT, action="pause"), token=_parent(rt, "co_guardian")))
    assert _error(rt) == "forbidden"
    await h.on_change_scheduled_top_up(rt.inbound(wire.ChangeScheduledTopUp(
        request_id="s-3", contract=CONTRACT, action="pause"), token=_parent(rt)))
    settings = await _settings(rt, h)
    assert settings.scheduled_top_up is not None and settings.scheduled_top_up.paused
    rt.now = NOW + timedelta(days=1)
    assert await h.ask_scheduled_top_ups() == 0
    assert rt.emitted(wire.AutoTopUpRequested) == []


async def test_a_failed_scheduled_payment_is_told_to_the_parent():
    rt, h = await _wallet()
    await h.on_set_scheduled_top_up(rt.inbound(wire.SetScheduledTopUp(
        request_id="s-1", contract=CONTRACT, days_of_month=[1], amount=500_00),
        token=_parent(rt)))
    rt.now = NOW + timedelta(days=1)
    await h.ask_scheduled_top_ups()
    [asked] = rt.emitted(wire.AutoTopUpRequested)
    await h.on_auto_top_up_failed(rt.inbound(integ.AutoTopUpCollectionFailed(
        request_id=asked.request_id, contract=CONTRACT, reason="card_declined",
        failed_at=rt.now), key=CONTRACT))
    [failed] = rt.emitted(wire.AutoTopUpFailed)
    assert (failed.request_id, failed.amount) == (asked.request_id, 500_00)


async def test_changing_an_absent_schedule_is_refused_with_its_code():
    rt, h = await _wallet()
    await h.on_change_scheduled_top_up(rt.inbound(wire.ChangeScheduledTopUp(
        request_id="s-1", contract=CONTRACT, action="resume"), token=_parent(rt)))
    assert _error(rt) == "unknown_schedule"


# --- services on/off --------------------------------------------------------------------------

async def test_transit_payments_off_declines_the_fare_and_reads_back():
    rt, h = await _wallet(300_00)
    await h.on_set_services(rt.inbound(wire.SetServices(
        request_id="sv-1", contract=CONTRACT, transit_payments=False), token=_parent(rt)))
    assert isinstance(_last_reply(rt), CommandAccepted)
    assert (await _settings(rt, h)).transit_payments is False
    await h.on_fare_assessed(rt.inbound(transit.FareAssessed(
        ride_id="ride-1", contract=CONTRACT, card_uid=CARD, amount=40_00, tapped_at=NOW),
        key=CONTRACT))
    [declined] = rt.emitted(wire.FareDeclined)
    assert declined.reason is wire.DeclineReason.TRANSIT_PAYMENTS_OFF
    [changed] = [c for c in rt.emitted(wire.ControlsChanged) if c.what == "transit_payments"]
    assert changed.contract == CONTRACT
    [switched] = rt.emitted(wire.TransitPaymentsSwitched)
    assert (switched.contract, switched.enabled) == (CONTRACT, False)


# --- applications -----------------------------------------------------------------------------

async def _apply(rt: FakeRuntime, h: Handlers, kind: str = "refund",
                 reason: str = "leaving_school", request_id: str = "app-1") -> None:
    await h.on_submit_application(rt.inbound(wire.SubmitApplication(
        request_id=request_id, contract=CONTRACT, kind=kind, reason=reason,
        comment="Переезжаем"), token=_parent(rt)))


async def _handle(rt: FakeRuntime, h: Handlers, decision: str, *, token: str,
                  request_id: str, comment: str = "") -> None:
    await h.on_handle_application(rt.inbound(wire.HandleApplication(
        request_id=request_id, contract=CONTRACT, application_id="app-1", decision=decision,
        comment=comment), token=token))


async def _applications(rt: FakeRuntime, h: Handlers) -> list[wire.Application]:
    await h.on_get_applications(rt.inbound(wire.GetApplications(contract=CONTRACT),
                                           token=_parent(rt)))
    reply = _last_reply(rt)
    assert isinstance(reply, wire.ApplicationsReply), reply
    return reply.applications


async def test_a_refund_application_pays_the_balance_out_once_when_done():
    rt, h = await _wallet(420_50)
    await _apply(rt, h)
    await _handle(rt, h, "accept", token=_admin(rt), request_id="h-1")
    done = rt.inbound(wire.HandleApplication(
        request_id="h-2", contract=CONTRACT, application_id="app-1", decision="done",
        comment="Деньги вернутся на карту родителя"), token=_admin(rt))
    await h.on_handle_application(done)
    assert isinstance(_last_reply(rt), CommandAccepted)
    await rt.redelivered_changes_nothing(h.on_handle_application, done)
    await _handle(rt, h, "done", token=_admin(rt), request_id="h-3")  # a second click
    assert isinstance(_last_reply(rt), CommandAccepted)
    payouts = await rt.db.wallet_ledger.count_documents({"operation_id": "app-1"})
    assert payouts == 2  # the canteen leg and the external:payout leg, once
    [app] = await _applications(rt, h)
    assert (app.status, app.refunded, app.staff_comment) == (
        wire.ApplicationStatus.DONE, 420_50, "Деньги вернутся на карту родителя")
    statuses = [(e.status, e.refunded) for e in rt.emitted(wire.ApplicationStatusChanged)]
    assert statuses == [(wire.ApplicationStatus.SUBMITTED, None),
                        (wire.ApplicationStatus.ACCEPTED, None),
                        (wire.ApplicationStatus.DONE, 420_50)]
    account = await rt.db.wallet_accounts.find_one({"_id": CONTRACT})
    assert account is not None and account["status"] == "closed"
    await h.on_get_statement(rt.inbound(wire.GetStatement(contract=CONTRACT, kinds=["payout"]),
                                        token=_parent(rt)))
    statement = _last_reply(rt)
    assert isinstance(statement, wire.StatementReply)
    assert [(line.kind, line.operation_id, line.amount) for line in statement.lines] == [
        ("payout", "app-1", -420_50)]


async def test_staff_of_another_school_cannot_handle_and_a_refusal_needs_a_comment():
    rt, h = await _wallet(100_00)
    await _apply(rt, h, "new_card", "lost")
    await _handle(rt, h, "accept", token=_admin(rt, "other-school"), request_id="h-1")
    assert _error(rt) == "forbidden"
    await _handle(rt, h, "refuse", token=_admin(rt), request_id="h-2")
    assert _error(rt) == "comment_required"
    await _handle(rt, h, "refuse", token=_admin(rt), request_id="h-3",
                  comment="Карта найдена в школе")
    [app] = await _applications(rt, h)
    assert (app.kind, app.status, app.staff_comment) == (
        wire.ApplicationKind.NEW_CARD, wire.ApplicationStatus.REFUSED, "Карта найдена в школе")


async def test_a_co_guardian_may_ask_for_a_new_card_but_not_for_the_refund():
    rt, h = await _wallet()
    await h.on_submit_application(rt.inbound(wire.SubmitApplication(
        request_id="app-1", contract=CONTRACT, kind="refund", reason="leaving_school"),
        token=_parent(rt, "co_guardian")))
    assert _error(rt) == "forbidden"
    await h.on_submit_application(rt.inbound(wire.SubmitApplication(
        request_id="app-2", contract=CONTRACT, kind="new_card", reason="damaged"),
        token=_parent(rt, "co_guardian")))
    assert isinstance(_last_reply(rt), CommandAccepted)
    await _apply(rt, h, "new_card", "lost", request_id="app-3")
    assert _error(rt) == "application_open"


async def test_the_reissued_card_finishes_the_new_card_application_by_itself():
    rt, h = await _wallet(100_00)
    await _apply(rt, h, "new_card", "lost")
    await _handle(rt, h, "accept", token=_admin(rt), request_id="h-1")
    reissued = rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract="40012346", new_card_uid="04A2B3C4D5E6F8",
        school_id=SCHOOL, school_tz=TZ, class_name="5Б", reissued_at=NOW), key=CONTRACT)
    await h.on_card_reissued(reissued)
    await rt.redelivered_changes_nothing(h.on_card_reissued, reissued)
    [app] = await _applications(rt, h)
    assert (app.status, app.staff_comment) == (wire.ApplicationStatus.DONE, "new card issued")
    changes = [(e.application_id, e.status, e.comment)
               for e in rt.emitted(wire.ApplicationStatusChanged)]
    assert changes[-1] == ("app-1", wire.ApplicationStatus.DONE, "new card issued")
    assert [e.new_contract for e in rt.emitted(wire.AccountReissued)] == ["40012346"]


async def test_a_school_lists_its_applications_by_status():
    rt, h = await _wallet()
    await _apply(rt, h, "new_card", "lost")
    await h.on_get_applications(rt.inbound(wire.GetApplications(
        school_id=SCHOOL, status="submitted"), token=_admin(rt)))
    reply = _last_reply(rt)
    assert isinstance(reply, wire.ApplicationsReply)
    assert [a.application_id for a in reply.applications] == ["app-1"]
    await h.on_get_applications(rt.inbound(wire.GetApplications(school_id="other-school"),
                                           token=_admin(rt)))
    assert _error(rt) == "forbidden"


async def test_the_scheduler_goes_through_every_due_account_batch_after_batch():
    rt, h = await _wallet()
    contracts = [f"4001239{n}" for n in range(5)]
    for n, contract in enumerate(contracts):
        await h.on_card_issued(rt.inbound(integ.CardIssued(
            contract=contract, card_uid=f"04A2B3C4D5E7{n:02d}", school_id=SCHOOL,
            school_tz=TZ, student_id=f"stu-{contract}", class_name="5Б",
            birth_date="2014-03-08", issued_at=NOW), key=contract))
        await h.on_set_scheduled_top_up(rt.inbound(wire.SetScheduledTopUp(
            request_id=f"s-{n}", contract=contract, days_of_month=[1], amount=100_00),
            token=rt.token(Role.PARENT, children=[ChildGrant(contract=contract,
                                                             role="primary")])))
    rt.now = NOW + timedelta(days=1)
    assert await h.ask_scheduled_top_ups(batch=2) == 5
    assert {r.contract for r in rt.emitted(wire.AutoTopUpRequested)} == set(contracts)
