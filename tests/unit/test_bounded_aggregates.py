"""A school year through the aggregates that live for years (issue: bounded aggregates).

Wallet's account is checked through the real store (tests/integration/test_wallet_flows.py,
a year of operations). The others are checked here on their documents: transit's card travel
(four rides a day, each debited: bounded by
its correction window), auth's account (a login a day from ever new devices, a
factor reset a month). Per-day and per-message documents (access days and taps, notify
messages and journeys, auth sessions) are one document each and expire by TTL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import bson
import pytest

from services.auth.domain import Account, AccountKind, AccountStatus
from services.auth.security import AccessRole
from services.transit.domain import CardTravel, FareAssessed
from tests.unit.transit._transit_builders import CARD, OPERATOR, rulebook, tap

pytestmark = pytest.mark.unit

MAX_DOC = 16 * 1024
SCHOOL_DAYS = [datetime(2026, 9, 1, 4, tzinfo=UTC) + timedelta(days=2 * n) for n in range(180)]


def _size(doc: dict[str, object]) -> int:
    return len(bson.encode(doc))


def test_a_year_of_rides_keeps_the_card_travel_document_within_its_correction_window() -> None:
    """Transit keeps a card's rides while a late upload may still reprice their week
    (``late_upload_days`` after the week), so the document has a ceiling set by the rules, not
    by the card's age: a child riding four times every day for a year weighs no more at the
    end than after six weeks (about 90 rides in the window, under 128 KB)."""
    travel = CardTravel(card_uid=CARD, operator_id=OPERATOR)
    rules = rulebook(daily=10_000)
    sizes = {}
    for n in range(365):
        day = datetime(2026, 9, 1, 4, tzinfo=UTC) + timedelta(days=n)
        for r in range(4):
            at = day + timedelta(hours=2 * r)
            outcome = travel.record_tap(tap(f"t{n}-{r}", at.strftime("%Y-%m-%d %H:%M"),
                                            route=str(r)), rules, at)
            for event in outcome.events:
                if isinstance(event, FareAssessed) and event.debit_amount:
                    travel.record_fare_debited(event.ride_id, event.debit_amount, at)
        sizes[n] = _size(travel.to_doc())
    ceiling = max(sizes[n] for n in range(42, 49))
    assert max(sizes.values()) <= ceiling * 1.1, (ceiling, max(sizes.values()))
    assert ceiling < 128 * 1024


def test_a_year_of_logins_keeps_the_auth_account_document_small() -> None:
    account = Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                      status=AccountStatus.ACTIVE, created_at=SCHOOL_DAYS[0],
                      phone="+79161112233", claimed_contract="40817810", password_hash="HASH")
    for n, day in enumerate(SCHOOL_DAYS):
        account.login(password_ok=n % 7 != 3, now=day, session_id=f"s{n}",
                      refresh_token_hash=f"rt-{n}", device=f"Phone {n} / Android 14",
                      ip_hash=f"ip-{n}")
        account.pending_events.clear()
    assert _size(account.to_doc()) < MAX_DOC
