"""notify's cabinet rules without I/O: journal filters, preferences read back with the service
switches, push devices as the guardian sees them, and support requests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notify.domain import (
    Author,
    Channel,
    DeliveryStatus,
    JournalFilter,
    NotificationKind,
    NotifyError,
    PushDevice,
    SupportStatus,
    SupportTicket,
    answer_notification,
    device_to_remove,
    devices_in_use_order,
    plan_removal,
    preferences_of,
    route,
    select_journal,
)

from .builders import CONTRACT, guardian, msk, purchase, top_up

pytestmark = pytest.mark.unit


# --- journal filters -----------------------------------------------------------------------

def _journal(*, push_only: bool = True) -> list:
    """Two top-ups and a purchase (a top-up also e-mails a receipt)."""
    g = guardian("g-1")
    return [m for e in (top_up("t1", msk(10)), purchase("p1", msk(12, 30)),
                        top_up("t2", msk(9, day=11)))
            for m in route(e, [g], msk(23, day=11)).messages
            if not push_only or m.channel is Channel.PUSH]


def test_the_journal_keeps_only_lines_of_the_chosen_kinds_newest_first():
    lines = select_journal(_journal(), JournalFilter(kinds=frozenset({NotificationKind.TOP_UP})),
                           msk(23, day=11))
    assert [(ln.kind, ln.at) for ln, _ in lines] == [
        (NotificationKind.TOP_UP, msk(9, day=11)), (NotificationKind.TOP_UP, msk(10))]


def test_a_date_window_includes_its_start_and_excludes_its_end():
    window = JournalFilter(since=msk(10), until=msk(9, day=11))
    lines = select_journal(_journal(), window, msk(23, day=11))
    assert [ln.at for ln, _ in lines] == [msk(12, 30), msk(10)]


def test_channel_contract_and_status_filters_combine():
    messages = _journal(push_only=False)
    now = msk(23, day=11)
    emails = select_journal(messages, JournalFilter(channel=Channel.EMAIL), now)
    assert [(ln.kind, ln.channel) for ln, _ in emails] == [
        (NotificationKind.RECEIPT, Channel.EMAIL)] * 2
    assert select_journal(messages, JournalFilter(contract="99999999"), now) == []
    pending = select_journal(messages, JournalFilter(status="pending", contract=CONTRACT), now)
    assert pending and all(status == "pending" for _, status in pending)
    assert select_journal(messages, JournalFilter(status="sent"), now) == []


def test_a_message_not_yet_due_shows_as_deferred():
    g = guardian("g-1")
    [m] = [m for m in route(purchase("late", msk(23)), [g], msk(23)).messages
           if m.channel is Channel.PUSH]  # 23:00 is inside the default quiet hours
    [(_, status)] = select_journal([m], JournalFilter(), msk(23, 1))
    assert m.status is DeliveryStatus.PENDING and status == "deferred"


# --- preferences read back, service switches ----------------------------------------------

def test_preferences_read_back_show_defaults_and_changes():
    g = guardian("g-1")
    g.set_preference(NotificationKind.TOP_UP, Channel.SMS, True)
    view = preferences_of(g)
    assert view.channels[NotificationKind.TOP_UP] == (Channel.PUSH, Channel.SMS)
    assert view.channels[NotificationKind.RECEIPT] == (Channel.EMAIL,)  # a document: e-mail
    assert NotificationKind.ONE_TIME_CODE not in view.channels
    assert NotificationKind.NEW_LOGIN in view.always_on
    assert view.sms_informer and view.push


def test_switching_the_sms_informer_off_stops_news_by_sms_but_not_security_alerts():
    g = guardian("g-1", push=False)
    g.set_preference(NotificationKind.TOP_UP, Channel.SMS, True)
    assert g.set_services(sms_informer=False) is True
    assert g.set_services(sms_informer=False) is False  # again: no change, no new version
    assert {m.channel for m in route(top_up(), [g], msk(12)).messages} == {Channel.EMAIL}
    assert not g.wants(NotificationKind.TOP_UP, Channel.SMS)
    assert g.wants(NotificationKind.NEW_LOGIN, Channel.SMS)
    assert preferences_of(g).channels[NotificationKind.TOP_UP] == (Channel.PUSH,)


def test_switching_push_off_sends_news_by_sms_where_allowed():
    g = guardian("g-1", push=True)
    g.set_preference(NotificationKind.TOP_UP, Channel.SMS, True)
    g.set_services(push=False)
    channels = {m.channel for m in route(top_up(), [g], msk(12)).messages}
    assert Channel.PUSH not in channels and Channel.SMS in channels


def test_service_switches_survive_the_store_and_old_documents_read_as_on():
    g = guardian("g-1")
    g.set_services(sms_informer=False, push=False)
    back = type(g).from_doc(g.to_doc())
    assert (back.sms_informer, back.push_service) == (False, False)
    old = g.to_doc()
    del old["services"]
    assert type(g).from_doc(old).sms_informer is True


# --- push devices --------------------------------------------------------------------------

def _device(char: str, used_hour: int) -> PushDevice:
    return PushDevice(char * 64, "ios", msk(8), msk(used_hour))


def test_devices_show_a_fingerprint_and_an_id_never_the_token():
    device = _device("a", 9)
    assert device.fingerprint == "AAAA-AAAA" and device.token_id == "pt_" + "a" * 24
    assert [d.token_id for d in devices_in_use_order([_device("a", 9), _device("b", 11)])] == [
        "pt_" + "b" * 24, "pt_" + "a" * 24]


def test_removing_a_device_names_its_key_and_whether_one_is_left():
    devices = {"acc:" + "a" * 64: _device("a", 9), "acc:" + "b" * 64: _device("b", 10)}
    assert device_to_remove(devices, "pt_" + "a" * 24) == ("acc:" + "a" * 64, True)
    assert device_to_remove({"k": _device("a", 9)}, "pt_" + "a" * 24) == ("k", False)
    with pytest.raises(NotifyError) as refused:
        device_to_remove(devices, "pt_" + "c" * 24)
    assert refused.value.reason.value == "unknown_push_token"


# --- support requests ----------------------------------------------------------------------

def _ticket() -> SupportTicket:
    return SupportTicket.open(account_id="acc_parent0001", request_id="req-1", topic="top_up",
                              text="Пополнение не дошло", contract=CONTRACT,
                              school_id="izh-school-42", at=msk(9))


def test_a_request_opened_again_with_the_same_id_is_the_same_request():
    first, again = _ticket(), _ticket()
    assert first.ticket_id == again.ticket_id and first.same_request(again)
    other = SupportTicket.open(account_id="acc_parent0001", request_id="req-1", topic="card",
                               text="Другое", contract=None, school_id=None, at=msk(9))
    assert not first.same_request(other)
    assert first.status is SupportStatus.OPEN and first.thread[0].author is Author.PARENT


def test_an_answer_is_posted_once_and_tells_the_parent():
    t = _ticket()
    assert t.answer(post_id="a1", author=Author.SUPPORT, text="Зачислено", at=msk(10))
    assert not t.answer(post_id="a1", author=Author.SUPPORT, text="Зачислено", at=msk(11))
    assert t.status is SupportStatus.ANSWERED and len(t.thread) == 2
    [event] = t.pull_events()
    note = answer_notification(event)
    assert note.kind is NotificationKind.SUPPORT_ANSWERED and note.account_id == t.account_id
    g = guardian("acc_parent0001")
    [push] = route(note, [g], msk(10)).messages
    assert push.channel is Channel.PUSH and "Зачислено" not in push.short


def test_a_closed_request_takes_no_answer_and_closing_again_changes_nothing():
    t = _ticket()
    t.answer(post_id="a1", author=Author.SCHOOL_ADMIN, text="Готово", at=msk(10), close=True)
    assert t.status is SupportStatus.CLOSED
    version = t.version
    assert t.close(msk(11)) is False and t.version == version
    with pytest.raises(NotifyError) as refused:
        t.answer(post_id="a2", author=Author.SUPPORT, text="Ещё", at=msk(12))
    assert refused.value.reason.value == "support_request_closed"


def test_a_ticket_survives_the_store():
    t = _ticket()
    t.answer(post_id="a1", author=Author.SUPPORT, text="Зачислено", at=msk(10) +
             timedelta(milliseconds=250))
    back = SupportTicket.from_doc(t.ticket_id, t.to_doc())
    assert back.to_doc() == t.to_doc() and back.thread[1].at == t.thread[1].at


def test_a_removal_repeated_under_its_request_id_deletes_nothing_more():
    devices = {"k-b": _device("b", 10)}
    assert plan_removal("pt_" + "a" * 24, devices, "pt_" + "a" * 24) == (None, True)
    assert plan_removal(None, devices, "pt_" + "b" * 24) == ("k-b", False)
    with pytest.raises(NotifyError) as refused:
        plan_removal("pt_" + "a" * 24, devices, "pt_" + "b" * 24)
    assert refused.value.reason.value == "idempotency_conflict"
