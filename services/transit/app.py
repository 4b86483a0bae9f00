"""transit: the topic -> handler table, the fare rules seeded at start, the reminder tick."""

from __future__ import annotations

import json

from contracts.integrations import (
    CardIssued,
    CardReissued,
    ValidatorTapped,
    VirtualCardIssued,
)
from contracts.transit import GetRides, SetConcession, SetFareRules
from contracts.wallet import (
    CardBlocked,
    CardUnblocked,
    DebtSettled,
    FareDebited,
    FareDeclined,
    TransitPaymentsSwitched,
)
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, Tick, main
from services.transit import metrics, store
from services.transit.domain import parse_fare_rules
from services.transit.handlers import Handlers
from services.transit.settings import Settings


async def wire(rt: Runtime) -> Routes:
    settings: Settings = rt.settings  # type: ignore[assignment]
    # A broken rules file stops the service at start, never half-way through pricing.
    books = parse_fare_rules(json.loads(settings.fare_rules_file.read_text(encoding="utf-8")))
    await store.ensure_indexes(rt.db, ride_retention_days=settings.ride_retention_days)
    await store.seed_rules(rt.db, books, rt.clock())
    h = Handlers(rt)
    rt.uow.observe(metrics.observe)  # domain counters, per committed event
    rt.ticks.append(Tick(settings.reminder_every_s, h.remind_concessions,
                         "concession-reminders"))
    return {
        # integrations.card-issuance.v1
        CardIssued: h.on_card_issued,
        CardReissued: h.on_card_reissued,
        VirtualCardIssued: h.on_virtual_card_issued,
        # integrations.validator-taps.v1
        ValidatorTapped: h.on_validator_tapped,
        # wallet.events.v1 (other wallet events are ignored)
        FareDebited: h.on_fare_debited,
        FareDeclined: h.on_fare_declined,
        DebtSettled: h.on_debt_settled,
        CardBlocked: h.on_card_blocked,
        CardUnblocked: h.on_card_unblocked,
        TransitPaymentsSwitched: h.on_transit_payments_switched,
        # transit.commands.v1
        SetFareRules: h.on_set_fare_rules,
        SetConcession: h.on_set_concession,
        GetRides: h.on_get_rides,
    }


def run() -> None:
    main("transit", Settings, wire)
