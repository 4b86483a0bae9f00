"""Notify's domain counters, from the events of committed transactions (``UnitOfWork.observe``:
each committed event counted once)."""

from __future__ import annotations

from prometheus_client import Counter

from contracts import notify as wire
from contracts.envelope import ContractModel

DELIVERIES = Counter("schoolcard_notify_deliveries_total", "Notification delivery outcomes "
                     "(sent, failed and retrying, dead), by channel", ["channel", "status"])
IN_APP = Counter("schoolcard_notify_in_app_messages_total", "Messages for the cabinet and app "
                 "(the in-app channel)")


def observe(messages: list[ContractModel]) -> None:
    for m in messages:
        if isinstance(m, wire.NotificationDelivered):
            DELIVERIES.labels(m.channel.value, m.status[:16]).inc()
        elif isinstance(m, wire.InAppMessage):
            IN_APP.inc()
