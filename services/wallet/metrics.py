"""Wallet's domain counters, from the events of committed transactions (``UnitOfWork.observe``:
each committed event counted once; the runtime's ``schoolcard_*`` metrics cover handling,
retries, dead letters, transactions and the outbox)."""

from __future__ import annotations

from prometheus_client import Counter

from contracts import wallet as wire
from contracts.envelope import ContractModel

SALES = Counter("schoolcard_wallet_sales_total", "Canteen sales posted")
SALES_KOPECKS = Counter("schoolcard_wallet_sales_kopecks_total",
                        "Kopecks of canteen sales paid from balances (bonus points excluded)")
DECLINES = Counter("schoolcard_wallet_declines_total", "Canteen sales and fares declined, by "
                   "what was declined and why", ["what", "reason"])
TOP_UPS = Counter("schoolcard_wallet_top_ups_total", "Top-ups, by outcome", ["outcome"])
TOP_UP_KOPECKS = Counter("schoolcard_wallet_top_up_kopecks_total", "Kopecks credited by top-ups")
FARES = Counter("schoolcard_wallet_fares_debited_total", "Fares debited")
FARE_KOPECKS = Counter("schoolcard_wallet_fare_kopecks_total", "Kopecks debited for fares")


def observe(messages: list[ContractModel]) -> None:
    for m in messages:
        if isinstance(m, wire.SalePosted):
            SALES.inc()
            SALES_KOPECKS.inc(m.paid_money)
        elif isinstance(m, wire.SaleDeclined):
            DECLINES.labels("sale", m.reason.value).inc()
        elif isinstance(m, wire.FareDeclined):
            DECLINES.labels("fare", m.reason.value).inc()
        elif isinstance(m, wire.TopUpApplied):
            TOP_UPS.labels("applied").inc()
            TOP_UP_KOPECKS.inc(m.amount)
        elif isinstance(m, wire.TopUpRejected):
            TOP_UPS.labels("rejected").inc()
        elif isinstance(m, wire.FareDebited):
            FARES.inc()
            FARE_KOPECKS.inc(m.amount)
