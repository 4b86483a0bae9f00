"""The gateway's live feed without a broker: records of notify.deliveries.v1 and
notify.in-app.v1 reach the streams open for their guardian account, and no other."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.envelope import ContractModel, Envelope, encode
from contracts.notify import InAppMessage, NotificationDelivered
from services.gateway.kafka import DeliveryFeed

pytestmark = pytest.mark.unit

AT = datetime(2026, 9, 1, 4, 5, tzinfo=UTC)


def record(message: ContractModel, key: str) -> Any:
    env = Envelope.new(message, source="notify", subject=key)
    return SimpleNamespace(value=encode(message),
                           headers=[(k, v.encode()) for k, v in env.to_headers().items()])


def test_an_in_app_message_and_a_delivery_status_reach_only_their_accounts_streams() -> None:
    feed = DeliveryFeed(kafka=None)  # type: ignore[arg-type]  # no broker: fan-out only
    mine, other = feed.subscribe("acc_mine00000001"), feed.subscribe("acc_other0000001")
    shown = InAppMessage(notification_id="n-1", account_id="acc_mine00000001",
                         contract="40012345", kind="arrived_safely", title="Пришёл в школу",
                         text="Маша пришла в школу в 08:05.", at=AT)
    status = NotificationDelivered(notification_id="n-1", account_id="acc_mine00000001",
                                   channel="in_app", kind="arrived_safely", status="sent",
                                   attempts=1, at=AT)
    feed._fan_out(record(shown, "acc_mine00000001"))
    feed._fan_out(record(status, "acc_mine00000001"))
    assert [mine.get_nowait(), mine.get_nowait()] == [shown, status]
    assert other.empty()
