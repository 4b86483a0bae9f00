from __future__ import annotations

import pytest

from services.notify.domain import (
    Channel,
    DeliveryStatus,
    Guardian,
    GuardianRole,
    Message,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    build_digest,
    route,
)

from .builders import guardian, msk, purchase

pytestmark = pytest.mark.unit

DIGESTED = frozenset({NotificationKind.CANTEEN_PURCHASE, NotificationKind.CHILD_ENTERED})


def digest_guardian(account_id: str = "g-1") -> Guardian:
    g = guardian(account_id)
    g.set_digest(enabled=True, kinds=DIGESTED)
    return g


def held_lunches(g: Guardian, count: int = 2) -> list[Message]:
    held = []
    for i in range(count):
        held.extend(route(purchase(f"sale-{i}", msk(12, 30 + i)), [g], msk(12, 31 + i)).messages)
    return held


def test_digest_kinds_are_held_instead_of_sent_and_get_the_days_digest_date() -> None:
    g = digest_guardian()
    (held,) = route(purchase(), [g], msk(12, 31)).messages
    assert held.status is DeliveryStatus.HELD and held.digest_day == msk(12, 0).date()
    (late,) = route(purchase("late"), [g], msk(20, 30)).messages
    assert late.digest_day == msk(12, 0, day=11).date()


def test_the_digest_folds_held_messages_into_one_message_per_channel() -> None:
    g = digest_guardian()
    held = held_lunches(g)
    plan = build_digest(g, msk(12, 0).date(), held, msk(20, 0))
    (digest,) = plan.messages
    assert (digest.kind, digest.channel) == (NotificationKind.DAILY_DIGEST, Channel.PUSH)
    assert digest.dedupe_key == "digest:g-1:2025-09-10:g-1:push"
    assert digest.body.splitlines() == [
        "Сводка за 10.09.2025:",
        "12:30 Столовая: 135,00\u00a0₽, остаток 1\u00a0234,50\u00a0₽",
        "12:31 Столовая: 135,00\u00a0₽, остаток 1\u00a0234,50\u00a0₽",
    ]
    assert all(m.status is DeliveryStatus.DIGESTED for m in held)
    assert len(plan.digested) == 2


def test_building_the_digest_again_changes_nothing_and_gives_the_same_key() -> None:
    g = digest_guardian()
    held = held_lunches(g)
    first = build_digest(g, msk(12, 0).date(), held, msk(20, 0))
    again = build_digest(g, msk(12, 0).date(), held, msk(20, 5))
    assert again.messages == () and again.digested == ()
    assert first.messages[0].dedupe_key == "digest:g-1:2025-09-10:g-1:push"


def test_an_event_held_on_push_and_email_appears_once_in_the_digest() -> None:
    g = digest_guardian()
    g.set_preference(NotificationKind.CANTEEN_PURCHASE, Channel.EMAIL, True)
    held = held_lunches(g, count=1)
    assert len(held) == 2
    (digest,) = build_digest(g, msk(12, 0).date(), held, msk(20, 0)).messages
    assert len(digest.body.splitlines()) == 2


def test_held_messages_for_a_later_digest_are_left_for_it() -> None:
    g = digest_guardian()
    tomorrow = route(purchase("late"), [g], msk(20, 30)).messages[0]
    plan = build_digest(g, msk(12, 0).date(), [tomorrow], msk(20, 31))
    assert plan.messages == () and tomorrow.status is DeliveryStatus.HELD


def test_a_guardian_with_several_children_sees_whose_event_each_line_is() -> None:
    g = digest_guardian()
    g.link_child("99999999", GuardianRole.PRIMARY, "Петя")
    (digest,) = build_digest(g, msk(12, 0).date(), held_lunches(g, 1), msk(20, 0)).messages
    assert digest.body.splitlines()[1].startswith("12:30 Маша: Столовая")


def test_the_digest_inside_quiet_hours_waits_for_their_end() -> None:
    g = digest_guardian()
    held = held_lunches(g, 1)
    (digest,) = build_digest(g, msk(12, 0).date(), held, msk(22, 30)).messages
    assert digest.due_at == msk(7, 0, day=11)


def test_security_kinds_can_never_be_put_into_the_digest() -> None:
    g = guardian()
    g.set_digest(enabled=True, kinds=frozenset({NotificationKind.NEW_LOGIN}))
    assert g.digest_kinds == frozenset()


def test_a_digest_refuses_messages_of_another_guardian() -> None:
    g, other = digest_guardian("g-1"), digest_guardian("g-2")
    with pytest.raises(NotifyError) as err:
        build_digest(g, msk(12, 0).date(), held_lunches(other), msk(20, 0))
    assert err.value.reason is NotifyRejection.WRONG_GUARDIAN


def test_disabled_digest_sends_digest_kinds_normally() -> None:
    g = digest_guardian()
    g.set_digest(enabled=False, kinds=DIGESTED)
    (push,) = route(purchase(), [g], msk(12, 31)).messages
    assert push.status is DeliveryStatus.PENDING and push.is_due(msk(12, 31))
