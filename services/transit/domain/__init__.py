"""Pure domain of transit: fare rules as data, pricing by tap time, the per-card aggregate with
late-tap corrections and the deny list, and ride history. No I/O; the clock is an argument."""

from services.transit.domain.credentials import follows_contract_block, refuses_tap
from services.transit.domain.events import (
    CardAllowed,
    CardDenied,
    ConcessionExpiryReminded,
    FareAdjustment,
    FareAssessed,
    FareCorrected,
    FareRefundIssued,
    TransitEvent,
    event_from_doc,
    event_to_doc,
)
from services.transit.domain.history import (
    RideLine,
    explanation_text,
    line_text,
    render_csv,
    ride_lines,
)
from services.transit.domain.payments import refuses_fare_tap
from services.transit.domain.pricing import (
    CapKind,
    ConcessionEligibility,
    Explanation,
    PricedRide,
    Tap,
    UnpriceableTap,
    concession_reminder_due,
    price_taps,
)
from services.transit.domain.reminders import remind_unridden_card
from services.transit.domain.rules import (
    FareRulebook,
    FareRulesError,
    FareRulesVersion,
    Mode,
    ModeFare,
    parse_fare_rules,
)
from services.transit.domain.travel import (
    OWED_DECLINES,
    CardTravel,
    DebitStatus,
    Outcome,
    RejectionReason,
    RideRecord,
    TransitRejection,
    untravelled_card_blocked,
)

__all__ = [
    "OWED_DECLINES",
    "CapKind",
    "CardAllowed",
    "CardDenied",
    "CardTravel",
    "ConcessionEligibility",
    "ConcessionExpiryReminded",
    "DebitStatus",
    "Explanation",
    "FareAdjustment",
    "FareAssessed",
    "FareCorrected",
    "FareRefundIssued",
    "FareRulebook",
    "FareRulesError",
    "FareRulesVersion",
    "Mode",
    "ModeFare",
    "Outcome",
    "PricedRide",
    "RejectionReason",
    "RideLine",
    "RideRecord",
    "Tap",
    "TransitEvent",
    "TransitRejection",
    "UnpriceableTap",
    "concession_reminder_due",
    "event_from_doc",
    "event_to_doc",
    "explanation_text",
    "follows_contract_block",
    "line_text",
    "parse_fare_rules",
    "price_taps",
    "refuses_fare_tap",
    "refuses_tap",
    "remind_unridden_card",
    "render_csv",
    "ride_lines",
    "untravelled_card_blocked",
]
