"""Transit payments switched off by the parent (wallet's ``TransitPaymentsSwitched``).

Wallet then declines every fare ``transit_payments_off`` (no debt), so transit refuses the card
before it rides: every active card of the contract goes on the validators' deny list with that
reason, kept apart from a block or a debt, and a tap taken from the switch on is refused (an
offline validator may upload a ride taken before it late: that one still prices).
"""

from __future__ import annotations

from datetime import datetime


def refuses_fare_tap(payments_off_at: datetime | None, tapped_at: datetime) -> bool:
    """True when a tap must be refused (``transit_payments_off``): the card's transit payments
    were switched off at ``payments_off_at`` (None: they are on), at or before the tap."""
    return payments_off_at is not None and tapped_at >= payments_off_at
