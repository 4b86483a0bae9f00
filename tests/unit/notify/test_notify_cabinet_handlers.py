"""notify's cabinet commands and queries over the in-memory fakes: the journal's filters, the
preferences read back, the devices listed and removed, and support requests from opening to
the answer that tells the parent."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import notify as wire
from contracts import wallet
from contracts.auth import ChildGrant, Role
from contracts.envelope import CommandAccepted, ErrorReply
from contracts.types import GuardianRole
from services.notify.handlers import Handlers
from tests.unit.fakes import FakeRuntime

from .test_notify_handlers import ACCOUNT, CONTRACT, NOW, OTHER, _notify, _own, example

pytestmark = pytest.mark.unit

SCHOOL = "izh-school-42"


def _last(rt: FakeRuntime) -> object:
    return rt.replies()[-1]


def _code(rt: FakeRuntime) -> str:
    reply = _last(rt)
    assert isinstance(reply, ErrorReply), reply
    return reply.error.code


# --- journal filters -----------------------------------------------------------------------

async def _journal_of_two_kinds() -> tuple[FakeRuntime, Handlers]:
    rt, h, _ = await _notify()
    await h.on_top_up(rt.inbound(example(wallet.TopUpApplied), key=CONTRACT))
    await h.on_low_balance(rt.inbound(example(wallet.LowBalanceReached), key=CONTRACT))
    rt.fake_uow.replies.clear()
    return rt, h


async def test_the_journal_answers_only_the_kinds_and_channel_asked_for():
    rt, h = await _journal_of_two_kinds()
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT), token=_own(rt)))
    everything = _last(rt)
    assert isinstance(everything, wire.JournalReply)
    assert {ln.kind for ln in everything.lines} >= {"top_up", "low_balance"}
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT, kinds=["top_up"],
                                                      channel="push"), token=_own(rt)))
    chosen = _last(rt)
    assert isinstance(chosen, wire.JournalReply) and chosen.lines
    assert {(ln.kind, ln.channel) for ln in chosen.lines} == {("top_up", "push")}


async def test_a_journal_window_or_another_child_finds_nothing_outside_it():
    rt, h = await _journal_of_two_kinds()
    await h.on_get_journal(rt.inbound(wire.GetJournal(
        account_id=ACCOUNT, since=NOW + timedelta(days=1)), token=_own(rt)))
    assert _last(rt).lines == []  # type: ignore[attr-defined]
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT, contract="40099999"),
                                      token=_own(rt)))
    assert _last(rt).lines == []  # type: ignore[attr-defined]


async def test_an_unknown_kind_is_an_invalid_filter_and_a_cursor_keeps_its_filters():
    rt, h = await _journal_of_two_kinds()
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT, kinds=["weather"]),
                                      token=_own(rt)))
    assert _code(rt) == "invalid_filter"
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT, limit=1),
                                      token=_own(rt)))
    cursor = _last(rt).next_cursor  # type: ignore[attr-defined]
    assert cursor is not None
    await h.on_get_journal(rt.inbound(wire.GetJournal(account_id=ACCOUNT, limit=1,
                                                      cursor=cursor, kinds=["top_up"]),
                                      token=_own(rt)))
    assert _code(rt) == "invalid_cursor"


# --- preferences read back -------------------------------------------------------------------

async def test_preferences_set_are_read_back_with_the_service_switches():
    rt, h, _ = await _notify()
    await h.on_set_preferences(rt.inbound(example(
        wire.SetPreferences, channels={"top_up": ["push", "sms"]}, quiet_from="23:00",
        quiet_to="06:30", daily_digest=False, sms_informer=False), token=_own(rt)))
    assert isinstance(_last(rt), CommandAccepted)
    msg = rt.inbound(wire.GetPreferences(account_id=ACCOUNT), token=_own(rt))
    await h.on_get_preferences(msg)
    reply = _last(rt)
    assert isinstance(reply, wire.PreferencesReply)
    assert reply.channels["top_up"] == ["push"]  # SMS chosen, but the informer is off
    assert (reply.quiet_from, reply.quiet_to) == ("23:00", "06:30")
    assert reply.sms_informer is False and reply.push is True
    assert "new_login" in reply.always_on
    await rt.redelivered_changes_nothing(h.on_get_preferences, msg)


async def test_another_parent_may_not_read_the_preferences():
    rt, h, _ = await _notify()
    await h.on_get_preferences(rt.inbound(wire.GetPreferences(account_id=ACCOUNT),
                                          token=_own(rt, OTHER)))
    assert _code(rt) == "forbidden"


# --- push devices ------------------------------------------------------------------------------

async def _devices(rt: FakeRuntime, h: Handlers) -> list[wire.PushTokenInfo]:
    await h.on_list_push_tokens(rt.inbound(wire.ListPushTokens(account_id=ACCOUNT),
                                           token=_own(rt)))
    reply = _last(rt)
    assert isinstance(reply, wire.PushTokensReply)
    return reply.tokens


async def test_devices_are_listed_without_their_tokens_and_one_is_removed():
    rt, h, _ = await _notify()  # one device registered
    rt.now = NOW + timedelta(minutes=5)
    await h.on_register_push_token(rt.inbound(example(
        wire.RegisterPushToken, request_id="push-2", token="tablet-token-xyz", platform="ios"),
        token=_own(rt)))
    devices = await _devices(rt, h)
    assert [d.platform for d in devices] == ["ios", "android"]  # most recently used first
    dump = str(rt.replies()[-1].model_dump())
    assert "tablet-token-xyz" not in dump and "correct horse" not in dump
    msg = rt.inbound(wire.RemovePushToken(request_id="rm-1", account_id=ACCOUNT,
                                          token_id=devices[0].token_id), token=_own(rt))
    await h.on_remove_push_token(msg)
    assert isinstance(_last(rt), CommandAccepted)
    await rt.redelivered_changes_nothing(h.on_remove_push_token, msg)
    assert [d.token_id for d in await _devices(rt, h)] == [devices[1].token_id]
    guardian = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert guardian is not None and guardian["has_push_token"] is True


async def test_removing_the_last_device_turns_push_off_and_an_unknown_id_is_refused():
    rt, h, _ = await _notify()
    [device] = await _devices(rt, h)
    await h.on_remove_push_token(rt.inbound(wire.RemovePushToken(
        request_id="rm-1", account_id=ACCOUNT, token_id=device.token_id), token=_own(rt)))
    guardian = await rt.db.notify_guardians.find_one({"_id": ACCOUNT})
    assert guardian is not None and guardian["has_push_token"] is False
    await h.on_remove_push_token(rt.inbound(wire.RemovePushToken(
        request_id="rm-2", account_id=ACCOUNT, token_id=device.token_id), token=_own(rt)))
    assert _code(rt) == "unknown_push_token"


async def test_support_may_not_list_or_remove_a_parents_devices():
    rt, h, _ = await _notify()
    support = rt.token(Role.SUPPORT, account_id="acc_support0001")
    await h.on_list_push_tokens(rt.inbound(wire.ListPushTokens(account_id=ACCOUNT),
                                           token=support))
    assert _code(rt) == "forbidden"


# --- support requests --------------------------------------------------------------------------

def _parent(rt: FakeRuntime, account_id: str = ACCOUNT) -> str:
    return rt.token(account_id=account_id,
                    children=[ChildGrant(contract=CONTRACT, role=GuardianRole.PRIMARY)])


async def _open(rt: FakeRuntime, h: Handlers, **fields: object) -> wire.SupportRequestReply:
    command = wire.OpenSupportRequest(**{
        "request_id": "sup-req-1", "account_id": ACCOUNT, "topic": "top_up",
        "text": "Пополнение через терминал не дошло", "contract": CONTRACT,
        "school_id": SCHOOL, **fields})
    await h.on_open_support_request(rt.inbound(command, token=_parent(rt)))
    reply = _last(rt)
    assert isinstance(reply, wire.SupportRequestReply), reply
    return reply


async def test_a_parent_opens_a_request_and_a_retry_opens_nothing_new():
    rt, h, _ = await _notify()
    opened = await _open(rt, h)
    assert opened.request.status == "open" and len(opened.thread) == 1
    again = await _open(rt, h)
    assert again.request.ticket_id == opened.request.ticket_id
    assert await rt.db.notify_support_requests.count_documents({}) == 1
    await h.on_open_support_request(rt.inbound(wire.OpenSupportRequest(
        request_id="sup-req-1", account_id=ACCOUNT, topic="card", text="Другой вопрос"),
        token=_parent(rt)))
    assert _code(rt) == "support_request_conflict"


async def test_a_parent_may_not_open_a_request_about_someone_elses_child():
    rt, h, _ = await _notify()
    await h.on_open_support_request(rt.inbound(wire.OpenSupportRequest(
        request_id="sup-x", account_id=ACCOUNT, topic="card", text="?", contract="40099999"),
        token=_parent(rt)))
    assert _code(rt) == "forbidden"


async def test_support_answers_the_parent_is_notified_and_reads_the_thread():
    rt, h, woken = await _notify()
    ticket = (await _open(rt, h)).request.ticket_id
    support = rt.token(Role.SUPPORT, account_id="acc_support0001")
    msg = rt.inbound(wire.AnswerSupportRequest(request_id="ans-1", ticket_id=ticket,
                                               text="Платёж зачислен"), token=support)
    await h.on_answer_support_request(msg)
    answered = _last(rt)
    assert isinstance(answered, wire.SupportRequestReply)
    assert answered.request.status == "answered"
    assert [m.author for m in answered.thread] == ["parent", "support"]
    notes = await rt.db.notify_messages.find({"kind": "support_answered"}).to_list(None)
    assert [n["guardian_id"] for n in notes] == [ACCOUNT] and woken.times > 0
    await rt.redelivered_changes_nothing(h.on_answer_support_request, msg)
    await h.on_get_support_request(rt.inbound(wire.GetSupportRequest(ticket_id=ticket),
                                              token=_parent(rt)))
    assert [m.text for m in _last(rt).thread][-1] == "Платёж зачислен"  # type: ignore[attr-defined]
    await h.on_get_support_requests(rt.inbound(wire.GetSupportRequests(account_id=ACCOUNT),
                                               token=_parent(rt)))
    [summary] = _last(rt).requests  # type: ignore[attr-defined]
    assert summary.status == "answered"


async def test_a_parent_may_not_answer_nor_read_another_parents_request():
    rt, h, _ = await _notify()
    ticket = (await _open(rt, h)).request.ticket_id
    await h.on_answer_support_request(rt.inbound(wire.AnswerSupportRequest(
        request_id="ans-1", ticket_id=ticket, text="сам себе"), token=_parent(rt)))
    assert _code(rt) == "forbidden"
    await h.on_get_support_request(rt.inbound(wire.GetSupportRequest(ticket_id=ticket),
                                              token=_parent(rt, OTHER)))
    assert _code(rt) == "unknown_support_request"


async def test_a_school_admin_answers_only_requests_of_their_school_and_sees_its_queue():
    rt, h, _ = await _notify()
    ticket = (await _open(rt, h)).request.ticket_id
    elsewhere = rt.token(Role.SCHOOL_ADMIN, account_id="acc_admin00002", school_id="other-1")
    await h.on_answer_support_request(rt.inbound(wire.AnswerSupportRequest(
        request_id="ans-1", ticket_id=ticket, text="?"), token=elsewhere))
    assert _code(rt) == "forbidden"
    admin = rt.token(Role.SCHOOL_ADMIN, account_id="acc_admin00001", school_id=SCHOOL)
    await h.on_get_support_requests(rt.inbound(wire.GetSupportRequests(status="open"),
                                               token=admin))
    assert [r.ticket_id for r in _last(rt).requests] == [ticket]  # type: ignore[attr-defined]
    await h.on_answer_support_request(rt.inbound(wire.AnswerSupportRequest(
        request_id="ans-2", ticket_id=ticket, text="Карта перевыпущена", close=True),
        token=admin))
    assert _last(rt).request.status == "closed"  # type: ignore[attr-defined]
    await h.on_get_support_requests(rt.inbound(wire.GetSupportRequests(), token=elsewhere))
    assert _last(rt).requests == []  # type: ignore[attr-defined]


async def test_a_parent_closes_a_request_and_a_closed_one_takes_no_answer():
    rt, h, _ = await _notify()
    ticket = (await _open(rt, h)).request.ticket_id
    await h.on_close_support_request(rt.inbound(wire.CloseSupportRequest(
        request_id="close-1", ticket_id=ticket), token=_parent(rt)))
    assert _last(rt).request.status == "closed"  # type: ignore[attr-defined]
    support = rt.token(Role.SUPPORT, account_id="acc_support0001")
    await h.on_answer_support_request(rt.inbound(wire.AnswerSupportRequest(
        request_id="ans-1", ticket_id=ticket, text="Поздно"), token=support))
    assert _code(rt) == "support_request_closed"


async def test_requests_are_listed_most_recently_changed_first_up_to_the_limit():
    rt, h, _ = await _notify()
    first = (await _open(rt, h, request_id="sup-a")).request.ticket_id
    rt.now = NOW + timedelta(minutes=1)
    second = (await _open(rt, h, request_id="sup-b", text="Второй вопрос")).request.ticket_id
    rt.now = NOW + timedelta(minutes=2)
    support = rt.token(Role.SUPPORT, account_id="acc_support0001")
    await h.on_answer_support_request(rt.inbound(wire.AnswerSupportRequest(
        request_id="ans-1", ticket_id=first, text="Ответ"), token=support))
    await h.on_get_support_requests(rt.inbound(wire.GetSupportRequests(account_id=ACCOUNT),
                                               token=_parent(rt)))
    assert [r.ticket_id for r in _last(rt).requests] == [first, second]  # type: ignore[attr-defined]
    await h.on_get_support_requests(rt.inbound(wire.GetSupportRequests(limit=1),
                                               token=support))
    assert [r.ticket_id for r in _last(rt).requests] == [first]  # type: ignore[attr-defined]


async def test_a_retried_removal_is_answered_the_same_and_a_reused_id_is_a_conflict():
    rt, h, _ = await _notify()
    await h.on_register_push_token(rt.inbound(example(
        wire.RegisterPushToken, request_id="push-2", token="tablet-token-xyz"), token=_own(rt)))
    first, second = await _devices(rt, h)
    remove = wire.RemovePushToken(request_id="rm-1", account_id=ACCOUNT,
                                  token_id=first.token_id)
    await h.on_remove_push_token(rt.inbound(remove, token=_own(rt)))
    await h.on_remove_push_token(rt.inbound(remove, token=_own(rt)))  # a new message id
    assert isinstance(_last(rt), CommandAccepted)
    assert [d.token_id for d in await _devices(rt, h)] == [second.token_id]
    await h.on_remove_push_token(rt.inbound(wire.RemovePushToken(
        request_id="rm-1", account_id=ACCOUNT, token_id=second.token_id), token=_own(rt)))
    assert _code(rt) == "idempotency_conflict"
    assert [d.token_id for d in await _devices(rt, h)] == [second.token_id]
