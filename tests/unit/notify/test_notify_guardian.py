from __future__ import annotations

from datetime import time

import pytest

from services.notify.domain import (
    SECURITY_KINDS,
    Channel,
    Guardian,
    GuardianRole,
    Locale,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    QuietHours,
    default_enabled,
)

from .builders import CONTRACT, guardian, msk

pytestmark = pytest.mark.unit


def test_defaults_are_push_for_all_sms_for_security_and_invitations_and_email_for_receipts(
) -> None:
    for kind in NotificationKind:
        assert default_enabled(kind, Channel.PUSH)
        assert default_enabled(kind, Channel.SMS) is (
            kind in SECURITY_KINDS or kind is NotificationKind.GUARDIAN_INVITED)
        assert default_enabled(kind, Channel.EMAIL) is (kind is NotificationKind.RECEIPT)


def test_security_push_and_sms_cannot_be_muted() -> None:
    g = guardian()
    for kind in SECURITY_KINDS:
        for channel in (Channel.PUSH, Channel.SMS):
            g.set_preference(kind, channel, False)
            assert g.wants(kind, channel)


def test_setting_the_same_value_again_does_not_bump_the_version() -> None:
    g = guardian()
    assert g.set_preference(NotificationKind.RIDE, Channel.PUSH, False)
    version = g.version
    assert not g.set_preference(NotificationKind.RIDE, Channel.PUSH, False)
    assert not g.link_child(CONTRACT, GuardianRole.PRIMARY, "Маша")
    assert not g.set_contacts(phone="+79991234567", email="parent@example.org",
                              has_push_token=True)
    assert g.version == version


def test_a_reissued_card_keeps_the_childs_role_and_name_under_the_new_contract() -> None:
    g = guardian(role=GuardianRole.CO_GUARDIAN)
    assert g.relink_child(CONTRACT, "87654321")
    assert g.role_for("87654321") is GuardianRole.CO_GUARDIAN
    assert g.child_label("87654321") == "Маша" and g.role_for(CONTRACT) is None


@pytest.mark.parametrize("phone", ["89991234567", "+7 999 123 45 67", "+0123456789", "+7"])
def test_phones_must_be_e164(phone: str) -> None:
    with pytest.raises(NotifyError) as err:
        Guardian("g-x", phone=phone)
    assert err.value.reason is NotifyRejection.INVALID_PHONE


def test_invalid_email_and_time_zone_are_refused_with_reasons() -> None:
    with pytest.raises(NotifyError) as bad_mail:
        guardian().set_contacts(phone=None, email="not-an-address", has_push_token=False)
    with pytest.raises(NotifyError) as bad_zone:
        guardian().set_locale(Locale.EN, "Mars/Olympus")
    assert bad_mail.value.reason is NotifyRejection.INVALID_EMAIL
    assert bad_zone.value.reason is NotifyRejection.INVALID_TIME_ZONE


def test_quiet_hours_may_span_midnight_or_sit_inside_one_day() -> None:
    night, nap = QuietHours.parse("22:00", "07:00"), QuietHours.parse("13:00", "15:00")
    assert night.contains(time(23, 0)) and night.contains(time(6, 59))
    assert not night.contains(time(7, 0)) and not night.contains(time(21, 59))
    assert nap.contains(time(13, 0)) and not nap.contains(time(15, 0))
    assert not QuietHours.parse("00:00", "00:00").contains(time(3, 0))


def test_quiet_hours_follow_the_guardians_own_time_zone() -> None:
    g = guardian()
    g.set_locale(Locale.RU, "Asia/Yekaterinburg")  # UTC+5: 21:30 in Moscow is 23:30 there
    assert g.in_quiet_hours(msk(21, 30))
    assert g.quiet_hours_end(msk(21, 30)) == msk(5, 0, day=11)


def test_malformed_quiet_hours_are_refused() -> None:
    with pytest.raises(NotifyError) as err:
        QuietHours.parse("25:00", "07:00")
    assert err.value.reason is NotifyRejection.INVALID_QUIET_HOURS


def test_a_guardian_round_trips_through_a_plain_document() -> None:
    g = guardian(locale=Locale.EN)
    g.link_child("87654321", GuardianRole.VIEWER)
    g.set_preference(NotificationKind.RIDE, Channel.SMS, True)
    g.set_quiet_hours(QuietHours.parse("23:00", "06:30"))
    g.set_digest(enabled=True, at=time(19, 30), kinds=frozenset({NotificationKind.RIDE}))
    doc = g.to_doc()
    back = Guardian.from_doc(doc)
    assert back.to_doc() == doc
    assert back.wants(NotificationKind.RIDE, Channel.SMS) and back.version == g.version


def test_the_guardians_repr_does_not_show_contacts() -> None:
    text = repr(guardian())
    assert "+79991234567" not in text and "parent@example.org" not in text
