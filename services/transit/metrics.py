"""Transit's own Prometheus metrics (the runtime's ``schoolcard_*`` metrics cover handling,
retries, dead letters, transactions and the outbox)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from services.transit import domain as d

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


def observe(events: Iterable[d.TransitEvent]) -> None:
    """Count one committed outcome (domain events; replays are not counted)."""
    for e in events:
        if isinstance(e, d.FareAssessed):
            RIDES.labels(e.explanation.value).inc()
            ASSESSED_KOPECKS.inc(e.debit_amount)
        elif isinstance(e, d.FareCorrected):
            CORRECTIONS.inc()
        elif isinstance(e, d.FareRefundIssued):
            REFUNDED_KOPECKS.inc(e.amount - e.against_debt)
        elif isinstance(e, d.CardDenied):
            DENY_LIST.labels("denied").inc()
        elif isinstance(e, d.CardAllowed):
            DENY_LIST.labels("allowed").inc()
        elif isinstance(e, d.ConcessionExpiryReminded):
            REMINDERS.inc()
