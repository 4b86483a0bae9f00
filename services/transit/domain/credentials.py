"""Virtual cards at the validators: rules for a credential blocked on its own.

A virtual card (phone/watch NFC id, QR token) is one more uid of a contract; the validators'
deny list carries it like the plastic card's. A uid blocked on its own (wallet's ``CardBlocked``
with a card uid) is refused from the instant of the block; rides taken before still price, as
an offline validator may upload them late. Its own block outlives a contract-level unblock.
"""

from __future__ import annotations

from datetime import datetime


def refuses_tap(own_blocked_at: datetime | None, tapped_at: datetime) -> bool:
    """True when a tap of a credential blocked on its own must be refused (``card_blocked``)."""
    return own_blocked_at is not None and tapped_at >= own_blocked_at


def follows_contract_block(own_blocked_at: datetime | None, blocked: bool) -> bool:
    """Whether a contract-level block or unblock changes this card's deny-list entry: a block
    always does; an unblock leaves a card blocked on its own denied."""
    return blocked or own_blocked_at is None
