from __future__ import annotations

from datetime import timedelta

import pytest

from services.notify.domain import (
    AutoTopUpFailedFacts,
    Channel,
    ChildLinkRefusedFacts,
    DeliveryStatus,
    GuardianRole,
    Locale,
    Message,
    NewLoginFacts,
    NotificationEvent,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    PasswordChangedFacts,
    QuietHours,
    SkipReason,
    admit,
    fall_back_to_sms,
    route,
)

from .builders import CONTRACT, entered, guardian, msk, purchase, top_up

pytestmark = pytest.mark.unit


def test_each_guardian_of_the_child_gets_one_push_by_default() -> None:
    mum, dad = guardian("g-mum"), guardian("g-dad", role=GuardianRole.CO_GUARDIAN)
    stranger = guardian("g-other", contract="87654321")
    plan = route(entered(), [mum, dad, stranger], msk(8, 6))
    assert [(m.guardian_id, m.channel) for m in plan.messages] == [
        ("g-dad", Channel.PUSH),
        ("g-mum", Channel.PUSH),
    ]
    assert all(m.status is DeliveryStatus.PENDING and m.is_due(msk(8, 6)) for m in plan.messages)


def test_a_guardian_without_the_app_gets_no_sms_unless_they_pay_for_sms() -> None:
    g = guardian(push=False)
    plan = route(entered(), [g], msk(8, 6))
    assert plan.messages == ()
    assert [s.reason for s in plan.skipped] == [SkipReason.NO_PUSH_TOKEN]


def test_a_guardian_without_the_app_who_enabled_sms_gets_an_sms_instead_of_push() -> None:
    g = guardian(push=False)
    g.set_preference(NotificationKind.CHILD_ENTERED, Channel.SMS, True)
    plan = route(entered(), [g], msk(8, 6))
    assert [(m.channel, m.address) for m in plan.messages] == [(Channel.SMS, "+79991234567")]


def test_sms_is_never_sent_beside_a_push_even_when_enabled() -> None:
    g = guardian()
    g.set_preference(NotificationKind.CHILD_ENTERED, Channel.SMS, True)
    plan = route(entered(), [g], msk(8, 6))
    assert [m.channel for m in plan.messages] == [Channel.PUSH]


def test_a_muted_kind_produces_no_message_and_says_why() -> None:
    g = guardian()
    g.set_preference(NotificationKind.CANTEEN_PURCHASE, Channel.PUSH, False)
    plan = route(purchase(), [g], msk(12, 31))
    assert plan.messages == ()
    assert [s.reason for s in plan.skipped] == [SkipReason.MUTED]


def test_a_top_up_goes_by_push_and_its_receipt_by_email() -> None:
    g = guardian()
    plan = route(top_up(), [g], msk(10, 1))
    assert [(m.kind, m.channel) for m in plan.messages] == [
        (NotificationKind.TOP_UP, Channel.PUSH),
        (NotificationKind.RECEIPT, Channel.EMAIL),
    ]
    receipt = plan.messages[1]
    assert receipt.address == "parent@example.org"
    assert "pay-777" in receipt.body


def test_a_viewer_gets_the_top_up_push_but_not_the_receipt() -> None:
    grandma = guardian("g-gran", role=GuardianRole.VIEWER)
    plan = route(top_up(), [grandma], msk(10, 1))
    assert [m.kind for m in plan.messages] == [NotificationKind.TOP_UP]
    assert [s.reason for s in plan.skipped] == [SkipReason.ROLE_EXCLUDED]


def test_email_opt_in_adds_an_email_and_a_missing_address_is_reported() -> None:
    with_mail, without_mail = guardian("g-a"), guardian("g-b", email=None)
    for g in (with_mail, without_mail):
        g.set_preference(NotificationKind.CHILD_ENTERED, Channel.EMAIL, True)
    plan = route(entered(), [with_mail, without_mail], msk(8, 6))
    assert sorted((m.guardian_id, m.channel) for m in plan.messages) == [
        ("g-a", Channel.EMAIL),
        ("g-a", Channel.PUSH),
        ("g-b", Channel.PUSH),
    ]
    assert [(s.guardian_id, s.reason) for s in plan.skipped] == [("g-b", SkipReason.NO_EMAIL)]


def test_quiet_hours_defer_a_push_to_their_end_instead_of_dropping_it() -> None:
    g = guardian()
    late_evening = msk(23, 15)
    plan = route(entered(at=late_evening), [g], late_evening)
    (push,) = plan.messages
    assert push.status is DeliveryStatus.PENDING
    assert push.due_at == msk(7, 0, day=11)
    assert not push.is_due(msk(6, 59, day=11))
    assert push.is_due(msk(7, 0, day=11))


def test_quiet_hours_after_midnight_end_the_same_morning() -> None:
    g = guardian()
    plan = route(entered(at=msk(2, 0)), [g], msk(2, 0))
    assert plan.messages[0].due_at == msk(7, 0)


def test_quiet_hours_do_not_delay_email() -> None:
    g = guardian()
    plan = route(top_up(at=msk(23, 0)), [g], msk(23, 0))
    push, receipt = plan.messages
    assert push.due_at == msk(7, 0, day=11)
    assert receipt.channel is Channel.EMAIL and receipt.is_due(msk(23, 0))


def test_security_messages_ignore_quiet_hours_and_mute_preferences() -> None:
    g = guardian()
    g.set_preference(NotificationKind.NEW_LOGIN, Channel.PUSH, False)
    g.set_quiet_hours(QuietHours.parse("21:00", "08:00"))
    at = msk(3, 0)
    event = NotificationEvent("login-1", NotificationKind.NEW_LOGIN, at,
                              NewLoginFacts(at, "Firefox on Linux", "Ижевск"), account_id="g-1")
    plan = route(event, [g, guardian("g-2")], at)
    (push,) = plan.messages
    assert (push.guardian_id, push.channel) == ("g-1", Channel.PUSH)
    assert push.is_due(at)


def test_a_security_message_without_the_app_goes_by_sms_without_any_opt_in() -> None:
    g = guardian(push=False)
    at = msk(23, 30)
    event = NotificationEvent("pw-1", NotificationKind.PASSWORD_CHANGED, at,
                              PasswordChangedFacts(at), account_id="g-1")
    (sms,) = route(event, [g], at).messages
    assert sms.channel is Channel.SMS and sms.is_due(at)


def test_a_refused_child_link_reaches_only_the_primary_it_names_at_once_at_night() -> None:
    primary, co = guardian("g-1"), guardian("g-2", role=GuardianRole.CO_GUARDIAN)
    primary.set_preference(NotificationKind.CHILD_LINK_REFUSED, Channel.PUSH, False)
    primary.set_quiet_hours(QuietHours.parse("21:00", "08:00"))
    at = msk(3, 0)
    event = NotificationEvent("link-1", NotificationKind.CHILD_LINK_REFUSED, at,
                              ChildLinkRefusedFacts(at), contract=CONTRACT, account_id="g-1")
    (push,) = route(event, [primary, co], at).messages
    assert (push.guardian_id, push.channel, push.contract) == ("g-1", Channel.PUSH, CONTRACT)
    assert push.is_due(at) and "Маша" in push.body  # the child the attempt named


def test_routine_money_news_waits_for_the_end_of_quiet_hours() -> None:
    g = guardian()
    g.set_quiet_hours(QuietHours.parse("21:00", "08:00"))
    at = msk(3, 0)
    event = NotificationEvent("auto-1", NotificationKind.AUTO_TOP_UP_FAILED, at,
                              AutoTopUpFailedFacts(at, 50_000, "card_declined"),
                              contract=CONTRACT)
    (push,) = route(event, [g], at).messages
    assert not push.is_due(at) and push.is_due(msk(8, 0))


def test_no_quiet_hours_means_immediate_delivery_at_night() -> None:
    g = guardian()
    g.set_quiet_hours(None)
    plan = route(entered(at=msk(23, 0)), [g], msk(23, 0))
    assert plan.messages[0].is_due(msk(23, 0))


def test_dedupe_keys_are_stable_when_the_event_is_redelivered_later() -> None:
    g, h = guardian("g-1"), guardian("g-2")
    first = route(entered("ev-42"), [g, h], msk(8, 6))
    again = route(entered("ev-42"), [h, g, g], msk(9, 30))
    assert [m.dedupe_key for m in first.messages] == [m.dedupe_key for m in again.messages]
    assert first.messages[0].dedupe_key == "ev-42:g-1:push"


def test_admitting_a_redelivered_message_keeps_the_stored_delivery_state() -> None:
    g = guardian()
    stored = route(entered("ev-42"), [g], msk(8, 6)).messages[0]
    stored.mark_sent(msk(8, 6), "prov-1")
    redelivered = route(entered("ev-42"), [g], msk(8, 20)).messages[0]
    kept = admit(stored, redelivered)
    assert kept is stored
    assert kept.status is DeliveryStatus.SENT and kept.attempts == 1


def test_admitting_a_different_message_under_a_reused_event_id_is_a_conflict() -> None:
    g = guardian()
    stored = route(entered("ev-42"), [g], msk(8, 6)).messages[0]
    other = NotificationEvent("ev-42", NotificationKind.CHILD_LEFT, msk(15, 0),
                              entered().facts, contract=CONTRACT)
    clash = route(other, [g], msk(15, 0)).messages[0]
    with pytest.raises(NotifyError) as err:
        admit(stored, clash)
    assert err.value.reason is NotifyRejection.DEDUPE_KEY_CONFLICT


def test_a_dead_push_falls_back_to_one_sms_when_sms_is_allowed() -> None:
    g = guardian()
    g.set_preference(NotificationKind.CHILD_ENTERED, Channel.SMS, True)
    push = route(entered("ev-7"), [g], msk(8, 6)).messages[0]
    push.mark_failed(msk(8, 6), "unregistered_token", permanent=True)
    sms = fall_back_to_sms(push, g, msk(8, 6))
    again = fall_back_to_sms(push, g, msk(8, 7))
    assert isinstance(sms, Message) and isinstance(again, Message)
    assert (sms.channel, sms.address) == (Channel.SMS, "+79991234567")
    assert sms.dedupe_key == again.dedupe_key == "ev-7:g-1:sms"
    assert sms.fallback_of == "ev-7:g-1:push"
    assert sms.body == push.body


def test_a_dead_push_does_not_fall_back_when_the_parent_did_not_pay_for_sms() -> None:
    g = guardian()
    push = route(entered(), [g], msk(8, 6)).messages[0]
    for attempt in range(5):
        push.mark_failed(msk(8, 6) + timedelta(seconds=attempt * 20), "provider_503")
    outcome = fall_back_to_sms(push, g, msk(8, 8))
    assert push.status is DeliveryStatus.DEAD
    assert getattr(outcome, "reason", None) is SkipReason.MUTED


def test_a_failed_security_push_always_falls_back_to_sms() -> None:
    g = guardian()
    at = msk(14, 0)
    event = NotificationEvent("login-9", NotificationKind.NEW_LOGIN, at, NewLoginFacts(at),
                              account_id="g-1")
    push = route(event, [g], at).messages[0]
    push.mark_failed(at, "unregistered_token", permanent=True)
    sms = fall_back_to_sms(push, g, at)
    assert getattr(sms, "channel", None) is Channel.SMS


def test_a_push_still_being_retried_does_not_fall_back_yet() -> None:
    g = guardian()
    push = route(entered(), [g], msk(8, 6)).messages[0]
    push.mark_failed(msk(8, 6), "timeout")
    with pytest.raises(NotifyError) as err:
        fall_back_to_sms(push, g, msk(8, 6))
    assert err.value.reason is NotifyRejection.PUSH_NOT_FAILED


def test_a_fallback_sms_inside_quiet_hours_waits_for_their_end() -> None:
    g = guardian()
    g.set_quiet_hours(None)
    g.set_preference(NotificationKind.CHILD_LEFT, Channel.SMS, True)
    at = msk(21, 59)
    event = NotificationEvent("ev-left", NotificationKind.CHILD_LEFT, at, entered().facts,
                              contract=CONTRACT)
    push = route(event, [g], at).messages[0]
    push.mark_failed(at, "gone", permanent=True)
    g.set_quiet_hours(QuietHours.parse("22:00", "07:00"))
    sms = fall_back_to_sms(push, g, msk(22, 1))
    assert getattr(sms, "due_at", None) == msk(7, 0, day=11)


def test_the_guardians_locale_and_child_name_shape_the_text() -> None:
    ru, en = guardian("g-ru"), guardian("g-en", locale=Locale.EN, name="Masha")
    plan = route(purchase(), [ru, en], msk(12, 31))
    by_guardian = {m.guardian_id: m for m in plan.messages}
    assert by_guardian["g-ru"].body.startswith("Маша: покупка в столовой на 135,00\u00a0₽ в 12:30")
    assert by_guardian["g-en"].body.startswith("Masha bought RUB\u00a0135.00 in the canteen")
