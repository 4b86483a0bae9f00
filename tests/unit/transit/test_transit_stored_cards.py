"""What transit reads back from its card documents, whichever server wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.runtime import dialect
from services.transit import store

pytestmark = pytest.mark.unit

CLOSED = datetime(2026, 9, 1, 5, 12, 30, 468000, tzinfo=UTC)


@pytest.mark.parametrize(("server", "stored"), [
    ("mongodb", CLOSED), ("mongodb", CLOSED.replace(tzinfo=None)),
    ("nx27017", CLOSED),
    # nx-27017 keeps a datetime set on an existing document (close_cards) as a string
    ("nx27017", "2026-09-01 05:12:30.468000")])
def test_a_card_closed_by_a_reissue_pays_for_rides_before_its_closing_only(
        server, stored, monkeypatch) -> None:
    monkeypatch.setattr(dialect, "_current", dialect.DIALECTS[server])
    card = store._card({"_id": "04A2B3C4D5E6F7", "contract": "40012345", "status": "closed",
                        "closed_at": stored})

    assert card.closed_at == CLOSED
    assert card.accepts_tap_at(CLOSED - timedelta(minutes=1))
    assert not card.accepts_tap_at(CLOSED)
