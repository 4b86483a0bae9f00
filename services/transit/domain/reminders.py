"""The concession expiry reminder of a card that never rode.

A card's travel (``CardTravel``, one per operator) is created by its first tap, and reminds of
its own concession with its operator's rules (``CardTravel.remind_concession_expiry``). A card
with a concession and no ride yet has no travel and no operator: it is reminded from the card
itself, with the longest reminder period of all operators' rules (the parent hears as early as
any operator would tell), on the school's local day.
"""

from __future__ import annotations

from datetime import date, datetime

from services.transit.domain.events import ConcessionExpiryReminded
from services.transit.domain.pricing import ConcessionEligibility, concession_reminder_due


def remind_unridden_card(card_uid: str, concession: ConcessionEligibility | None,
                         reminded_for: date | None, today: date, days_before: int,
                         now: datetime) -> ConcessionExpiryReminded | None:
    """The reminder when it is due (once per expiry date, see
    :func:`concession_reminder_due`), else None. The caller records ``valid_until`` as
    reminded for the card."""
    if concession is None or not concession_reminder_due(concession, today, days_before,
                                                         reminded_for):
        return None
    until = concession.valid_until
    return ConcessionExpiryReminded(card_uid, until, (until - today).days, now)
