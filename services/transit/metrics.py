"""Transit's domain counters, from the messages of committed transactions
(``UnitOfWork.observe``: each committed event counted once; a replayed outcome's events are
sent again as ``replay`` and not counted). The runtime's ``schoolcard_*`` metrics cover
handling, retries, dead letters, transactions and the outbox."""

from __future__ import annotations

from prometheus_client import Counter

from contracts import transit as wire
from contracts.envelope import ContractModel

RIDES = Counter("schoolcard_transit_rides_total", "Rides recorded, by fare explanation",
                ["explanation"])
ASSESSED_KOPECKS = Counter("schoolcard_transit_assessed_kopecks_total",
                           "Kopecks sent to wallet for debit (FareAssessed)")
REFUNDED_KOPECKS = Counter("schoolcard_transit_refunded_kopecks_total",
                           "Kopecks sent to wallet for refund (FareCorrected)")
CORRECTIONS = Counter("schoolcard_transit_corrections_total",
                      "Rides repriced by a late or out-of-order tap")
DENY_LIST = Counter("schoolcard_transit_deny_list_changes_total",
                    "Deny-list entries published, by state", ["state"])
REMINDERS = Counter("schoolcard_transit_concession_reminders_total",
                    "Concession expiry reminders emitted")


def observe(messages: list[ContractModel]) -> None:
    for m in messages:
        if isinstance(m, wire.RideRecorded):
            RIDES.labels(m.explanation.value).inc()
        elif isinstance(m, wire.FareAssessed):
            ASSESSED_KOPECKS.inc(m.amount)
        elif isinstance(m, wire.FareCorrected):
            CORRECTIONS.inc()
            REFUNDED_KOPECKS.inc(m.refund)
        elif isinstance(m, wire.DenyListEntry):
            DENY_LIST.labels("denied" if m.denied else "allowed").inc()
        elif isinstance(m, wire.ConcessionExpiring):
            REMINDERS.inc()
