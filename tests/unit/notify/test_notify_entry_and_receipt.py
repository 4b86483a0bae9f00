from __future__ import annotations

import pytest

from services.notify.domain import (
    Channel,
    JourneyDay,
    NotificationKind,
    TimelineEntry,
    TimelineKind,
    TopUpFacts,
    entry_notification,
    route,
    route_receipt,
)

from .builders import CONTRACT, MSK, entered, guardian, msk, top_up

pytestmark = pytest.mark.unit


def test_the_days_first_entry_is_arrived_safely_again_on_redelivery_and_later_ones_stay_plain():
    day = JourneyDay.open(CONTRACT, msk(8, 5), MSK)
    day.record(TimelineEntry("ride-1", TimelineKind.RIDE, msk(7, 40), "29"))
    first = TimelineEntry("ev-1", TimelineKind.ENTRY, msk(8, 5), "Школа № 5")
    day.record(first)
    day.record(first)  # redelivered
    again = entry_notification(day, "ev-1", entered("ev-1"))
    assert again.kind is NotificationKind.ARRIVED_SAFELY
    assert again.event_id == f"journey:{day.key}:arrived_safely"
    day.record(TimelineEntry("ev-2", TimelineKind.ENTRY, msk(13, 0), "Школа № 5"))
    assert entry_notification(day, "ev-2", entered("ev-2")).kind is NotificationKind.CHILD_ENTERED


def test_a_receipt_to_a_guardians_address_is_the_same_message_as_the_top_ups_email():
    g = guardian()
    routed = [m for m in route(top_up("pay-1"), [g], msk(10, 1)).messages
              if m.channel is Channel.EMAIL]
    receipt = route_receipt(top_up("pay-1"), "parent@example.org", [g], msk(10, 2))
    assert [m.dedupe_key for m in routed] == [receipt.dedupe_key]
    assert receipt.fingerprint() == routed[0].fingerprint()


def test_a_receipt_to_another_address_goes_there_without_a_guardian_and_without_a_balance():
    event = top_up("pay-2")
    event = type(event)(event.event_id, event.kind, event.occurred_at,
                        TopUpFacts(msk(10, 0), 50_000, None, "pay-2"), contract=CONTRACT)
    receipt = route_receipt(event, "payer@example.org", [guardian()], msk(10, 1))
    assert receipt.guardian_id is None and receipt.address == "payer@example.org"
    assert receipt.kind is NotificationKind.RECEIPT and "pay-2" in receipt.body
    assert "Баланс после" not in receipt.body
