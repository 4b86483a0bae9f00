"""The in-app channel over the in-memory fakes: every notification a parent gets has an in-app
copy, delivered as it is stored (an InAppMessage with the Russian text, for the gateway to
stream), once per event, whatever quiet hours and the digest hold back; a parent may turn it
off per kind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from contracts import access, wallet
from contracts import notify as wire
from services.notify import domain as d
from tests.unit.fakes import plain_dialect
from tests.unit.notify.test_notify_handlers import ACCOUNT, CONTRACT, _notify, _own, example

pytestmark = pytest.mark.unit

PARENT_KINDS = [d.NotificationKind.CHILD_ENTERED, d.NotificationKind.CHILD_LEFT,
                d.NotificationKind.CANTEEN_PURCHASE, d.NotificationKind.PAYMENT_DECLINED,
                d.NotificationKind.LOW_BALANCE, d.NotificationKind.TOP_UP,
                d.NotificationKind.ARRIVED_SAFELY]


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


@pytest.mark.parametrize("kind", PARENT_KINDS, ids=[k.value for k in PARENT_KINDS])
def test_in_app_is_on_by_default_for_what_a_parent_is_told(kind: d.NotificationKind) -> None:
    assert d.channels_for(kind) >= {d.Channel.IN_APP}
    assert d.Guardian(ACCOUNT).wants(kind, d.Channel.IN_APP)


def test_a_receipt_and_a_code_never_travel_in_app() -> None:
    assert d.Channel.IN_APP not in d.channels_for(d.NotificationKind.RECEIPT)
    assert d.Channel.IN_APP not in d.channels_for(d.NotificationKind.ONE_TIME_CODE)


async def test_a_gate_entry_is_shown_in_app_at_once_with_its_text_and_only_once() -> None:
    rt, h, _ = await _notify()
    msg = rt.inbound(example(access.StudentEntered), key=CONTRACT)
    await h.on_entered(msg)
    [shown] = rt.emitted(wire.InAppMessage)
    assert (shown.account_id, shown.contract) == (ACCOUNT, CONTRACT)
    assert shown.kind in {"arrived_safely", "child_entered"}
    assert shown.title and any("а" <= ch <= "я" for ch in shown.text.lower())  # in Russian
    in_app = [s for s in rt.emitted(wire.NotificationDelivered) if s.channel == "in_app"]
    assert [(s.status, s.notification_id) for s in in_app] == [("sent", shown.notification_id)]
    [stored] = await rt.db.notify_messages.find({"channel": "in_app"}).to_list(None)
    assert stored["status"] == "sent" and stored["sendable"] is False  # the sender skips it
    await rt.redelivered_changes_nothing(h.on_entered, msg)
    # the same tap under a new message id (a producer's retry) shows nothing new
    await h.on_entered(rt.inbound(example(access.StudentEntered), key=CONTRACT))
    assert len(rt.emitted(wire.InAppMessage)) == 1


async def test_quiet_hours_and_the_digest_hold_push_back_but_not_in_app() -> None:
    rt, h, _ = await _notify()
    await h.on_set_preferences(rt.inbound(example(
        wire.SetPreferences, account_id=ACCOUNT, quiet_from="00:00", quiet_to="23:59",
        daily_digest=True), token=_own(rt)))
    await h.on_top_up(rt.inbound(example(wallet.TopUpApplied), key=CONTRACT))
    [shown] = rt.emitted(wire.InAppMessage)
    assert shown.kind == "top_up" and "₽" in shown.text
    pushes = await rt.db.notify_messages.find({"channel": "push"}).to_list(None)
    assert [m["status"] for m in pushes] == ["held"]


async def test_a_parent_who_turns_in_app_off_for_a_kind_gets_no_copy_of_it() -> None:
    rt, h, _ = await _notify()
    await h.on_set_preferences(rt.inbound(example(
        wire.SetPreferences, account_id=ACCOUNT, channels={"top_up": ["push"]}),
        token=_own(rt)))
    await h.on_top_up(rt.inbound(example(wallet.TopUpApplied), key=CONTRACT))
    assert rt.emitted(wire.InAppMessage) == []
    await h.on_entered(rt.inbound(example(access.StudentEntered), key=CONTRACT))
    assert [m.kind for m in rt.emitted(wire.InAppMessage)] != []  # other kinds still shown


def test_an_in_app_message_is_delivered_once_and_a_push_is_left_to_the_sender() -> None:
    now = datetime(2026, 9, 1, 5, 30, tzinfo=UTC)
    guardian = d.Guardian(ACCOUNT, has_push_token=True)
    guardian.link_child(CONTRACT, d.GuardianRole.PRIMARY)
    event = d.NotificationEvent("pay-1", d.NotificationKind.TOP_UP, now,
                                d.TopUpFacts(at=now, amount=500_00, balance_after=500_00,
                                             payment_id="pay-1", sub_balance="canteen"),
                                contract=CONTRACT)
    messages = d.messages_for(event, [guardian], now)
    assert sorted(m.channel.value for m in messages) == ["in_app", "push"]
    [shown] = d.deliver_in_app(messages, now)
    assert shown.sent.channel is d.Channel.IN_APP and shown.text
    assert d.deliver_in_app(messages, now) == []  # already sent: nothing twice
    assert [m.status for m in messages if m.channel is d.Channel.PUSH] == [
        d.DeliveryStatus.PENDING]
