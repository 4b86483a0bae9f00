"""The in-app channel: a notification shown in the parents' cabinet and app.

It has no provider and nothing to retry: an in-app message is delivered the moment notify
stores it, in the same transaction (its delivery is the ``InAppMessage`` notify publishes
through its outbox; the gateway streams it to the guardian's open pages). Quiet hours and the
daily digest do not hold it back: it makes no sound, and a parent who opens the cabinet
expects to see what happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .clock import require_aware
from .kinds import Channel, NotificationKind
from .message import Message, MessageSent


@dataclass(frozen=True, slots=True)
class InAppDelivered:
    """An in-app message delivered: what the guardian's pages show."""

    sent: MessageSent
    event_id: str
    guardian_id: str
    contract: str | None
    kind: NotificationKind
    title: str
    text: str
    occurred_at: datetime


def deliver_in_app(messages: Iterable[Message], now: datetime) -> list[InAppDelivered]:
    """Mark the in-app messages among ``messages`` that are due at ``now`` as sent, and say
    what each shows. Others are left as they are; a message already sent yields nothing (a
    redelivered event stores nothing new, so nothing is shown twice)."""
    now = require_aware(now)
    delivered: list[InAppDelivered] = []
    for m in messages:
        if m.channel is not Channel.IN_APP or m.guardian_id is None or not m.is_due(now):
            continue
        title, text = m.subject, m.body
        sent = m.mark_sent(now)
        if sent is not None:
            delivered.append(InAppDelivered(sent, m.event_id, m.guardian_id, m.contract, m.kind,
                                            title, text, m.occurred_at))
    return delivered
