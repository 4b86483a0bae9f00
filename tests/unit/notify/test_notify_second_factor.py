"""The "second factor switched off" security message: from auth's SecondFactorDisabled to the
one guardian account it concerns, at once and unmutable, in Russian and English, telling a
support reset apart from the owner's own change."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from contracts import auth
from services.notify import inbound
from services.notify.domain import (
    SECURITY_KINDS,
    Channel,
    Locale,
    NotificationKind,
    QuietHours,
    RenderContext,
    SecondFactorDisabledFacts,
    render,
    route,
)

from .builders import MSK, guardian, msk

pytestmark = pytest.mark.unit

ACCOUNT = "acc_7f3a9c2e1b4d"


def wire_event(*, by_support: bool, hour: int = 3) -> auth.SecondFactorDisabled:
    return auth.SecondFactorDisabled(account_id=ACCOUNT, by_support=by_support,
                                     at=msk(hour, 0))


def test_the_event_becomes_an_account_security_notification_keyed_by_the_fact() -> None:
    by_support = inbound.second_factor_disabled(wire_event(by_support=True))
    by_owner = inbound.second_factor_disabled(wire_event(by_support=False))
    assert by_support.kind is NotificationKind.SECOND_FACTOR_DISABLED
    assert NotificationKind.SECOND_FACTOR_DISABLED in SECURITY_KINDS
    assert (by_support.account_id, by_support.contract) == (ACCOUNT, None)
    assert by_support.facts == SecondFactorDisabledFacts(msk(3, 0), True)
    assert by_owner.facts == SecondFactorDisabledFacts(msk(3, 0), False)
    assert by_support.event_id != by_owner.event_id
    # A redelivery of the same fact maps onto the same notification.
    assert inbound.second_factor_disabled(wire_event(by_support=True)) == by_support


def test_it_goes_at_once_at_night_to_that_account_only_even_with_push_muted() -> None:
    g = guardian(ACCOUNT)
    g.set_preference(NotificationKind.SECOND_FACTOR_DISABLED, Channel.PUSH, False)
    g.set_quiet_hours(QuietHours.parse("21:00", "08:00"))
    event = inbound.second_factor_disabled(wire_event(by_support=True))
    (push,) = route(event, [g, guardian("acc_someoneelse1")], msk(3, 0)).messages
    assert (push.guardian_id, push.channel) == (ACCOUNT, Channel.PUSH)
    assert push.is_due(msk(3, 0))
    assert "поддержк" in push.body


def test_without_the_app_it_goes_by_sms_without_any_opt_in() -> None:
    event = inbound.second_factor_disabled(wire_event(by_support=False, hour=23))
    (sms,) = route(event, [guardian(ACCOUNT, push=False)], msk(23, 0)).messages
    assert sms.channel is Channel.SMS and sms.is_due(msk(23, 0))


@pytest.mark.parametrize(("locale", "support_words", "owner_words"), [
    (Locale.RU, ("служба поддержки", "Все сеансы завершены", "не обращались"),
     ("отключён", "достаточно пароля", "Если это были не вы")),
    (Locale.EN, ("support switched off", "All sessions were signed out", "did not contact"),
     ("switched off", "password alone", "If it was not you")),
])
def test_the_text_says_who_switched_it_off_and_what_to_do_if_it_was_not_the_parent(
        locale: Locale, support_words: tuple[str, ...], owner_words: tuple[str, ...]) -> None:
    ctx = RenderContext(locale, ZoneInfo(MSK))
    at = msk(9, 15)
    support = render(NotificationKind.SECOND_FACTOR_DISABLED,
                     SecondFactorDisabledFacts(at, True), ctx)
    owner = render(NotificationKind.SECOND_FACTOR_DISABLED,
                   SecondFactorDisabledFacts(at, False), ctx)
    assert all(w in support.body for w in support_words)
    assert all(w in owner.body for w in owner_words)
    assert "служба поддержки" not in owner.body and "support switched" not in owner.body
    for text in (support, owner):
        assert "09:15" in text.body and "09:15" in text.short
        assert not text.secret and "None" not in text.body
