"""notify's handlers over the in-memory fakes: the guardian projection, the messages each event
queues for the child's guardian, the app commands' replies, and a second delivery of the same
message that changes nothing.

The inputs are the contracts' documented examples (``example``), so one table covers every
event handler; the tests that need particular facts say so."""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from contracts import access, auth, transit, wallet
from contracts import integrations as integ
from contracts import notify as wire
from contracts.auth import ChildGrant
from contracts.envelope import CommandAccepted, ContractModel
from contracts.types import GuardianRole
from services.notify.handlers import Handlers
from services.notify.settings import Settings
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

T = TypeVar("T", bound=BaseModel)

ACCOUNT = "acc_7f3a9c2e1b4d"  # the contracts' example account, guardian of CONTRACT
OTHER = "acc_stranger0001"
CONTRACT = "40012345"
NOW = datetime(2026, 9, 1, 5, 30, tzinfo=UTC)  # the examples happen at 05:12:30Z


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def example(model: type[T], **fields: Any) -> T:
    """``model`` from its fields' documented examples (an enum without one: its first member;
    a flag: False), with ``fields`` instead where given."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in fields or not info.is_required():
            continue
        kind = typing.get_origin(info.annotation) or info.annotation
        if info.examples:
            data[name] = info.examples[0]
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            data[name] = next(iter(kind)).value
        elif kind is bool:
            data[name] = False
    return model.model_validate({**data, **fields})


class Woken:
    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


async def _notify(*, guardian: bool = True) -> tuple[FakeRuntime, Handlers, Woken]:
    rt = FakeRuntime("notify", Settings, now=NOW)
    woken = Woken()
    h = Handlers(rt, woken)
    if guardian:
        await h.on_contacts(rt.inbound(example(auth.GuardianContacts,
                                               email="parent@example.ru"), key=ACCOUNT))
        await h.on_guardian_linked(rt.inbound(example(auth.GuardianLinked, role="primary"),
                                              key=ACCOUNT))
        await h.on_register_push_token(rt.inbound(example(wire.RegisterPushToken),
                                                  token=_own(rt)))
        rt.fake_uow.replies.clear()
    return rt, h, woken


async def _messages(rt: FakeRuntime, account_id: str = ACCOUNT) -> list[dict[str, Any]]:
    return await rt.db.notify_messages.find({"guardian_id": account_id}).to_list(None)


def _own(rt: FakeRuntime, account_id: str = ACCOUNT) -> str:
    return rt.token(account_id=account_id)


# --- the guardian projection ---------------------------------------------------------------

async def test_contacts_are_projected_and_a_tombstone_deletes_the_guardian():
    rt, h, _ = await _notify(guardian=False)
    msg = rt.inbound(example(auth.GuardianContacts), key=ACCOUNT)
    await h.on_contacts(msg)
    stored = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert stored is not None and stored["phone"] == "+79121234567"
    await rt.redelivered_changes_nothing(h.on_contacts, msg)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts, phone=None, email=None),
                                   key=ACCOUNT))
    assert await rt.db.notify_guardians.find_one({"_id": ACCOUNT}) is None


async def test_a_linked_guardian_is_found_by_the_childs_contract():
    rt, h, _ = await _notify(guardian=False)
    msg = rt.inbound(example(auth.GuardianLinked, role="co_guardian"), key=ACCOUNT)
    await h.on_guardian_linked(msg)
    links = await rt.db.notify_guardianships.find({"contract": CONTRACT}).to_list(None)
    assert [x["account_id"] for x in links] == [ACCOUNT]
    await rt.redelivered_changes_nothing(h.on_guardian_linked, msg)


async def test_a_removed_guardian_no_longer_hears_about_the_child():
    rt, h, _ = await _notify()
    msg = rt.inbound(example(auth.GuardianRemoved), key=ACCOUNT)
    await h.on_guardian_removed(msg)
    assert await rt.db.notify_guardianships.count_documents({"contract": CONTRACT}) == 0
    await rt.redelivered_changes_nothing(h.on_guardian_removed, msg)
    await h.on_top_up(rt.inbound(example(wallet.TopUpApplied), key=CONTRACT))
    assert await _messages(rt) == []


async def test_a_closed_account_leaves_no_guardian_links_or_push_tokens():
    rt, h, _ = await _notify()
    await h.on_register_push_token(rt.inbound(example(wire.RegisterPushToken), token=_own(rt)))
    msg = rt.inbound(example(auth.AccountClosed), key=ACCOUNT)
    await h.on_account_closed(msg)
    dump = rt.fake_db.dump()
    assert {"notify_guardians", "notify_guardianships", "notify_push_tokens"} & set(dump) \
        == set()
    await rt.redelivered_changes_nothing(h.on_account_closed, msg)


# --- events that queue messages ------------------------------------------------------------

def _sale_item() -> integ.SaleItem:
    return example(integ.SaleItem)


EVENTS: list[tuple[str, Callable[[], ContractModel]]] = [
    ("on_login", lambda: example(auth.LoginSucceeded)),
    ("on_password_changed", lambda: example(auth.PasswordChanged, reset=False)),
    ("on_second_factor_disabled", lambda: example(auth.SecondFactorDisabled)),
    ("on_registration_attempted",
     lambda: example(auth.RegistrationAttemptedForExistingAccount)),
    ("on_refresh_token_reused", lambda: example(auth.RefreshTokenReused)),
    ("on_child_link_refused", lambda: example(auth.ChildLinkRefused)),
    ("on_guardian_invited", lambda: example(auth.GuardianInvited)),
    ("on_entered", lambda: example(access.StudentEntered)),
    ("on_left", lambda: example(access.StudentLeft)),
    ("on_manual_entry", lambda: example(access.ManualEntryRecorded)),
    ("on_late", lambda: example(access.LateArrivalDetected)),
    ("on_absent", lambda: example(access.AbsenceDetected)),
    ("on_sale_posted", lambda: example(wallet.SalePosted, items=[_sale_item()])),
    ("on_sale_declined", lambda: example(wallet.SaleDeclined, contract=CONTRACT)),
    ("on_fare_declined", lambda: example(wallet.FareDeclined)),
    ("on_top_up", lambda: example(wallet.TopUpApplied)),
    ("on_low_balance", lambda: example(wallet.LowBalanceReached)),
    ("on_card_blocked", lambda: example(wallet.CardBlocked, by_account=None)),
    ("on_grace_meal", lambda: example(wallet.GraceMealGranted)),
    ("on_dispute_opened", lambda: example(wallet.DisputeOpened)),
    ("on_dispute_resolved", lambda: example(wallet.DisputeResolved)),
    ("on_sale_line_refunded", lambda: example(wallet.SaleLineRefunded)),
    ("on_fare_refunded", lambda: example(wallet.FareRefunded)),
    ("on_debt_settled", lambda: example(wallet.DebtSettled)),
    ("on_top_up_rejected", lambda: example(wallet.TopUpRejected)),
    ("on_auto_top_up_failed", lambda: example(wallet.AutoTopUpFailed)),
    ("on_application_status_changed",
     lambda: example(wallet.ApplicationStatusChanged, status="refused", comment="нет печати")),
    ("on_receipt", lambda: example(wallet.ReceiptIssued)),
    ("on_ride", lambda: example(transit.RideRecorded)),
    ("on_concession_expiring", lambda: example(transit.ConcessionExpiring)),
]


@pytest.mark.parametrize(("handler", "message"), EVENTS, ids=[name for name, _ in EVENTS])
async def test_an_event_queues_messages_for_the_guardian_once(handler, message):
    rt, h, woken = await _notify()
    before = woken.times
    msg = rt.inbound(message(), key=CONTRACT)
    await getattr(h, handler)(msg)
    queued = await _messages(rt)
    assert queued, f"{handler} queued no message for the guardian"
    assert all(m["sendable"] or m["status"] == "held" for m in queued
               if m["channel"] != "in_app")
    # the in-app copy is delivered as it is stored: its InAppMessage goes with the commit
    in_app = [m["status"] for m in queued if m["channel"] == "in_app"]
    assert in_app == ["sent"] * len(rt.emitted(wire.InAppMessage))
    assert woken.times == before + 1  # the sender is woken after the commit
    await rt.redelivered_changes_nothing(getattr(h, handler), msg)


ABOUT_SOMEONE = [(name, message) for name, message in EVENTS if name != "on_receipt"]
"""A receipt goes to the e-mail address it names, guardian or not."""


@pytest.mark.parametrize(("handler", "message"), ABOUT_SOMEONE,
                         ids=[name for name, _ in ABOUT_SOMEONE])
async def test_an_event_about_nobodys_child_queues_nothing(handler, message):
    rt, h, _ = await _notify(guardian=False)
    await getattr(h, handler)(rt.inbound(message(), key=CONTRACT))
    assert await rt.db.notify_messages.count_documents({}) == 0


async def test_steps_of_the_day_are_kept_in_the_childs_journey():
    rt, h, _ = await _notify()
    await h.on_entered(rt.inbound(example(access.StudentEntered), key=CONTRACT))
    await h.on_sale_posted(rt.inbound(example(wallet.SalePosted, items=[_sale_item()]),
                                      key=CONTRACT))
    [journey] = await rt.db.notify_journeys.find({}).to_list(None)
    assert journey["contract"] == CONTRACT
    assert [e["kind"] for e in journey["entries"]] == ["entry", "purchase"]


async def test_lessons_starting_without_the_child_are_noted_in_the_journey():
    rt, h, _ = await _notify()
    msg = rt.inbound(example(access.NotInSchoolAtLessonStart), key=CONTRACT)
    await h.on_not_in_at_lesson_start(msg)
    [journey] = await rt.db.notify_journeys.find({}).to_list(None)
    assert journey["contract"] == CONTRACT
    assert (journey["lesson_start"], journey["missing_at_start"]) == ("08:30", True)
    assert await _messages(rt) == []  # the child did not ride toward school: no alert
    await rt.redelivered_changes_nothing(h.on_not_in_at_lesson_start, msg)


async def test_a_one_time_code_is_queued_for_the_phone_that_asked():
    rt, h, woken = await _notify(guardian=False)
    msg = rt.inbound(example(wire.OneTimeCodeRequested, phone="+79121234567"),
                     key="+79121234567")
    await h.on_code_requested(msg)
    [queued] = await rt.db.notify_messages.find({}).to_list(None)
    assert queued["channel"] == "sms"
    assert woken.times == 1
    await rt.redelivered_changes_nothing(h.on_code_requested, msg)


async def test_a_code_for_a_new_e_mail_is_queued_as_an_e_mail_to_that_address():
    rt, h, woken = await _notify(guardian=False)
    msg = rt.inbound(example(wire.OneTimeCodeRequested, email="new@example.ru",
                             purpose="email_confirmation"), key="new@example.ru")
    await h.on_code_requested(msg)
    [queued] = await rt.db.notify_messages.find({}).to_list(None)
    assert (queued["channel"], queued["address"]) == ("email", "new@example.ru")
    assert queued["_id"] == f"{msg.message.request_id}:email:email"
    assert woken.times == 1
    await rt.redelivered_changes_nothing(h.on_code_requested, msg)


def test_a_code_request_names_exactly_one_of_a_phone_and_an_e_mail():
    for both in ({}, {"phone": "+79121234567", "email": "new@example.ru"}):
        with pytest.raises(ValueError, match="exactly one"):
            example(wire.OneTimeCodeRequested, **both)


async def test_codes_beyond_the_numbers_hourly_quota_and_to_numbers_abroad_are_not_queued():
    rt, h, _ = await _notify(guardian=False)
    quota = h.code_policy.per_number_per_hour
    for i in range(quota + 2):
        await h.on_code_requested(rt.inbound(example(
            wire.OneTimeCodeRequested, request_id=f"reg-{i}", phone="+79121234567"),
            key="+79121234567"))
    await h.on_code_requested(rt.inbound(example(
        wire.OneTimeCodeRequested, request_id="reg-abroad", phone="+88216123456"),
        key="+88216123456"))
    queued = await rt.db.notify_messages.find({}).to_list(None)
    assert sorted(m["event_id"] for m in queued) == [f"reg-{i}" for i in range(quota)]
    counts = await rt.db.notify_code_counts.find({}).to_list(None)
    [number] = [c for c in counts if c["_id"].startswith("number:")]
    assert sum(number["hours"].values()) == quota


# --- the parents' cabinet: invitations and applications ---------------------------------

async def test_an_invitee_who_guards_no_child_yet_is_told_on_their_own_contacts():
    rt, h, _ = await _notify(guardian=False)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts, account_id=OTHER,
                                           phone="+79120000009"), key=OTHER))
    msg = rt.inbound(example(auth.GuardianInvited, account_id=OTHER, role="viewer"), key=OTHER)
    await h.on_guardian_invited(msg)
    queued = await _messages(rt, OTHER)
    # no app yet: the SMS the invitation goes by by default, and the cabinet's copy
    assert sorted((m["channel"], m["address"]) for m in queued) == [
        ("in_app", OTHER), ("sms", "+79120000009")]
    assert all(m["kind"] == "guardian_invited" and m["contract"] == CONTRACT for m in queued)
    assert f"Карта {CONTRACT}" in queued[0]["body"] and "личном кабинете" in queued[0]["body"]
    [shown] = rt.emitted(wire.InAppMessage)
    assert (shown.account_id, shown.kind) == (OTHER, "guardian_invited")
    await rt.redelivered_changes_nothing(h.on_guardian_invited, msg)


async def test_an_invitation_is_not_told_to_the_primary_or_other_guardians():
    rt, h, _ = await _notify()  # ACCOUNT is the child's primary guardian
    await h.on_guardian_invited(rt.inbound(example(auth.GuardianInvited, account_id=OTHER),
                                           key=OTHER))
    assert await _messages(rt) == []


async def test_the_guardians_hear_of_an_application_handled_but_not_of_its_submission():
    rt, h, _ = await _notify()
    submitted = example(wallet.ApplicationStatusChanged, kind="refund", status="submitted")
    await h.on_application_status_changed(rt.inbound(submitted, key=CONTRACT))
    assert await _messages(rt) == []
    for status, extra in (("accepted", {}), ("done", {"refunded": 150_000})):
        await h.on_application_status_changed(rt.inbound(example(
            wallet.ApplicationStatusChanged, kind="refund", status=status, **extra),
            key=CONTRACT))
    pushes = sorted((m["event_id"], m["subject"]) for m in await _messages(rt)
                    if m["channel"] == "push")
    assert [subject for _, subject in pushes] == ["Заявление принято", "Заявление выполнено"]
    [done] = [m for m in await _messages(rt) if m["channel"] == "push"
              and m["subject"] == "Заявление выполнено"]
    assert "Выплачено: 1\u00a0500,00\u00a0₽." in done["body"]


# --- app commands and queries --------------------------------------------------------------

async def test_a_guardian_sets_their_own_preferences():
    rt, h, _ = await _notify()
    msg = rt.inbound(example(wire.SetPreferences, daily_digest=True), token=_own(rt))
    await h.on_set_preferences(msg)
    assert rt.reply() == CommandAccepted(request_id="pay-2026-000123")
    stored = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert stored is not None and stored["digest"]["enabled"] is True
    await rt.redelivered_changes_nothing(h.on_set_preferences, msg)


async def test_nobody_sets_another_guardians_preferences():
    rt, h, _ = await _notify()
    before = rt.fake_db.dump()["notify_guardians"]
    await h.on_set_preferences(rt.inbound(example(wire.SetPreferences), token=_own(rt, OTHER)))
    assert rt.error_code() == "forbidden"
    assert rt.fake_db.dump()["notify_guardians"] == before


async def test_unknown_notification_kinds_are_invalid_preferences():
    rt, h, _ = await _notify()
    await h.on_set_preferences(rt.inbound(example(wire.SetPreferences,
                                                  channels={"weather": ["push"]}),
                                          token=_own(rt)))
    assert rt.error_code() == "invalid_preferences"


async def test_a_registered_push_token_is_stored_for_the_guardian():
    rt, h, _ = await _notify()
    msg = rt.inbound(example(wire.RegisterPushToken), token=_own(rt))
    await h.on_register_push_token(msg)
    assert rt.reply() == CommandAccepted(request_id="pay-2026-000123")
    [token] = await rt.db.notify_push_tokens.find({"account_id": ACCOUNT}).to_list(None)
    assert token["token"] == "correct horse battery staple"
    guardian = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert guardian is not None and guardian["has_push_token"] is True
    await rt.redelivered_changes_nothing(h.on_register_push_token, msg)


def _session_ended(session_id: str | None, *, kept: str | None = None,
                   reason: str = "logout") -> auth.SessionEnded:
    return auth.SessionEnded(account_id=ACCOUNT, session_id=session_id, kept_session_id=kept,
                             reason=reason, at=NOW)


async def _device(rt: FakeRuntime, h: Handlers, name: str, session_id: str) -> None:
    await h.on_register_push_token(rt.inbound(
        example(wire.RegisterPushToken, request_id=f"push-{name}", token=name),
        token=rt.token(account_id=ACCOUNT, session_id=session_id)))
    assert isinstance(rt.replies()[-1], CommandAccepted)


async def _devices(rt: FakeRuntime) -> dict[str, str | None]:
    docs = await rt.db.notify_push_tokens.find({"account_id": ACCOUNT}).to_list(None)
    return {d["token"]: d.get("session_id") for d in docs}


async def _has_push_token(rt: FakeRuntime) -> bool:
    guardian = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert guardian is not None
    return bool(guardian["has_push_token"])


async def test_a_push_token_ends_with_the_session_that_registered_it():
    rt, h, _ = await _notify(guardian=False)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts), key=ACCOUNT))
    await _device(rt, h, "phone", "ses-phone")
    await _device(rt, h, "tablet", "ses-tablet")
    assert await _devices(rt) == {"phone": "ses-phone", "tablet": "ses-tablet"}
    msg = rt.inbound(_session_ended("ses-phone"), key=ACCOUNT)
    await h.on_session_ended(msg)
    assert await _devices(rt) == {"tablet": "ses-tablet"}
    assert await _has_push_token(rt)
    await rt.redelivered_changes_nothing(h.on_session_ended, msg)
    await h.on_session_ended(rt.inbound(_session_ended("ses-tablet"), key=ACCOUNT))
    assert await _devices(rt) == {}
    assert not await _has_push_token(rt)  # routing now picks SMS or e-mail


async def test_a_revoked_devices_session_end_takes_its_push_token_and_leaves_the_others():
    rt, h, _ = await _notify(guardian=False)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts), key=ACCOUNT))
    await _device(rt, h, "lost-phone", "ses-phone")
    await _device(rt, h, "tablet", "ses-tablet")
    await h.on_session_ended(rt.inbound(_session_ended("ses-phone", reason="device_revoked"),
                                        key=ACCOUNT))
    assert await _devices(rt) == {"tablet": "ses-tablet"}
    assert await _has_push_token(rt)


async def test_every_session_ending_takes_every_push_token_but_the_kept_sessions():
    rt, h, _ = await _notify(guardian=False)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts), key=ACCOUNT))
    await _device(rt, h, "phone", "ses-phone")
    await _device(rt, h, "tablet", "ses-tablet")
    await h.on_session_ended(rt.inbound(_session_ended(None, kept="ses-tablet",
                                                       reason="password_change"), key=ACCOUNT))
    assert await _devices(rt) == {"tablet": "ses-tablet"}
    await h.on_session_ended(rt.inbound(_session_ended(None, reason="logout_everywhere"),
                                        key=ACCOUNT))
    assert await _devices(rt) == {}
    assert not await _has_push_token(rt)


async def test_the_access_token_of_an_ended_session_registers_no_push_token():
    rt, h, _ = await _notify(guardian=False)
    await h.on_contacts(rt.inbound(example(auth.GuardianContacts), key=ACCOUNT))
    await h.on_session_ended(rt.inbound(_session_ended("ses-gone"), key=ACCOUNT))
    await h.on_register_push_token(rt.inbound(
        example(wire.RegisterPushToken), token=rt.token(account_id=ACCOUNT,
                                                        session_id="ses-gone")))
    assert rt.error_code() == "session_ended"
    assert await _devices(rt) == {}
    assert not await _has_push_token(rt)
    # Every session ended: a token issued before is refused, one of a later login is not.
    rt.fake_uow.replies.clear()
    await h.on_session_ended(rt.inbound(_session_ended(None, reason="logout_everywhere"),
                                        key=ACCOUNT))
    await h.on_register_push_token(rt.inbound(
        example(wire.RegisterPushToken), token=rt.token(account_id=ACCOUNT,
                                                        session_id="ses-older")))
    assert rt.error_code() == "session_ended"
    rt.now = NOW + timedelta(seconds=5)
    await _device(rt, h, "phone", "ses-newer")
    assert await _devices(rt) == {"phone": "ses-newer"}


async def test_a_session_of_an_account_notify_has_no_guardian_for_ends_quietly():
    rt, h, _ = await _notify(guardian=False)
    await h.on_session_ended(rt.inbound(_session_ended("ses-staff"), key=ACCOUNT))
    assert await rt.db.notify_guardians.find_one({"_id": ACCOUNT}) is None


async def test_a_guardian_reads_their_journal_and_only_theirs():
    rt, h, _ = await _notify()
    await h.on_top_up(rt.inbound(example(wallet.TopUpApplied), key=CONTRACT))
    msg = rt.inbound(wire.GetJournal(account_id=ACCOUNT), token=_own(rt))
    await h.on_get_journal(msg)
    reply = rt.reply()
    assert isinstance(reply, wire.JournalReply)
    assert "top_up" in {line.kind for line in reply.lines}
    await rt.redelivered_changes_nothing(h.on_get_journal, msg)
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT),
                                      token=_own(rt, OTHER)))
    assert rt.replies()[-1].error.code == "forbidden"  # type: ignore[attr-defined]


async def test_a_guardian_reads_the_journey_of_their_child():
    rt, h, _ = await _notify()
    await h.on_entered(rt.inbound(example(access.StudentEntered), key=CONTRACT))
    parent = rt.token(account_id=ACCOUNT,
                      children=[ChildGrant(contract=CONTRACT, role=GuardianRole.PRIMARY)])
    msg = rt.inbound(example(wire.GetJourney), token=parent)
    await h.on_get_journey(msg)
    reply = rt.reply()
    assert isinstance(reply, wire.JourneyReply)
    assert reply.arrived_at is not None and len(reply.steps) == 1
    await rt.redelivered_changes_nothing(h.on_get_journey, msg)
    await h.on_get_journey(rt.inbound(example(wire.GetJourney), token=_own(rt, OTHER)))
    assert rt.replies()[-1].error.code == "forbidden"  # type: ignore[attr-defined]
