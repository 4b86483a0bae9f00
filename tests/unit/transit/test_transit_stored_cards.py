"""What transit reads back from its card documents, whichever server wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.transit import store

pytestmark = pytest.mark.unit

CLOSED = datetime(2026, 9, 1, 5, 12, 30, 468000, tzinfo=UTC)


@pytest.mark.parametrize("stored", [CLOSED, CLOSED.replace(tzinfo=None),
                                    "2026-09-01 05:12:30.468000"])
def test_a_card_closed_by_a_reissue_pays_for_rides_before_its_closing_only(stored) -> None:
    # nx-27017 keeps a datetime set on an existing document (close_cards) as a string
    card = store._card({"_id": "04A2B3C4D5E6F7", "contract": "40012345", "status": "closed",
                        "closed_at": stored})

    assert card.closed_at == CLOSED
    assert card.accepts_tap_at(CLOSED - timedelta(minutes=1))
    assert not card.accepts_tap_at(CLOSED)
