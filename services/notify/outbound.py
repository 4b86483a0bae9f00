"""Domain delivery events -> ``NotificationDelivered`` on notify.deliveries.v1, one function
per event. Message ids are uuid5 of the message's dedupe key, status and attempt, so a
re-recorded outcome keeps its id; the record never carries a text, an address or a code."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from contracts import notify as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from services.notify import domain as d

NAMESPACE = uuid.UUID("0c6d1f4a-8a51-4a55-bb0e-4b7e2f3d9a20")
TOPIC = topic_for(wire.NotificationDelivered).name
IN_APP_TOPIC = topic_for(wire.InAppMessage).name


def notification_id(dedupe_key: str) -> str:
    """Stable public id of a message (the dedupe key itself may hold characters and lengths an
    identifier may not)."""
    return str(uuid.uuid5(NAMESPACE, dedupe_key))


Wired = tuple[str, str, "wire.NotificationDelivered", str]


def _delivered(key: str, guardian_id: str | None, event_id: str, channel: d.Channel,
               kind: d.NotificationKind, status: str, attempts: int,
               at: datetime) -> Wired:
    message = wire.NotificationDelivered(
        notification_id=notification_id(key), account_id=guardian_id,
        channel=wire.Channel(channel.value), kind=kind.value, status=status, attempts=attempts,
        at=at)
    record_key = guardian_id or event_id
    return TOPIC, record_key, message, str(uuid.uuid5(NAMESPACE, f"{key}:{status}:{attempts}"))


def queued(m: d.Message, now: datetime) -> Wired | None:
    """A message that will not go out now (quiet hours, daily digest) is reported deferred."""
    if m.status is d.DeliveryStatus.HELD or (m.due_at is not None and m.due_at > now):
        return _delivered(m.dedupe_key, m.guardian_id, m.event_id, m.channel, m.kind,
                          "deferred", m.attempts, now)
    return None


def _sent(e: d.MessageSent, m: d.Message, now: datetime) -> Wired:
    return _delivered(e.dedupe_key, e.guardian_id, m.event_id, e.channel, e.kind, "sent",
                      e.attempts, e.sent_at)


def _failed(e: d.MessageDeliveryFailed, m: d.Message, now: datetime) -> Wired:
    return _delivered(e.dedupe_key, m.guardian_id, m.event_id, e.channel, m.kind, "failed",
                      e.attempt, now)


def _dead(e: d.MessageDead, m: d.Message, now: datetime) -> Wired:
    return _delivered(e.dedupe_key, e.guardian_id, m.event_id, e.channel, e.kind, "dead",
                      e.attempts, e.at)


OUTBOUND: dict[type[Any], Callable[[Any, d.Message, datetime], Wired]] = {
    d.MessageSent: _sent,
    d.MessageDeliveryFailed: _failed,
    d.MessageDead: _dead,
}


def to_wire(event: d.DeliveryEvent | None, message: d.Message, now: datetime) -> Wired | None:
    """(topic, key, message, message id) for a delivery outcome; None for a no-op."""
    if event is None:
        return None
    return OUTBOUND[type(event)](event, message, now)


def in_app(e: d.InAppDelivered) -> list[tuple[str, str, ContractModel, str]]:
    """An in-app message delivered: the ``InAppMessage`` the gateway streams (its text, on
    the personal-data topic read by the gateway alone) and the ``sent`` status beside the
    other channels' (no text)."""
    shown = wire.InAppMessage(
        notification_id=notification_id(e.sent.dedupe_key), account_id=e.guardian_id,
        contract=e.contract, kind=e.kind.value, title=e.title[:200], text=e.text[:2000],
        at=e.occurred_at)
    status = _delivered(e.sent.dedupe_key, e.guardian_id, e.event_id, e.sent.channel,
                        e.kind, "sent", e.sent.attempts, e.sent.sent_at)
    return [(IN_APP_TOPIC, e.guardian_id, shown,
             str(uuid.uuid5(NAMESPACE, f"{e.sent.dedupe_key}:shown"))), status]
