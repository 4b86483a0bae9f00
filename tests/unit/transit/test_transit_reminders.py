from datetime import UTC, date, datetime

import pytest

from services.transit.domain import ConcessionEligibility, remind_unridden_card

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 6, 6, 0, tzinfo=UTC)
UNTIL = date(2026, 3, 10)


def test_a_card_that_never_rode_is_reminded_in_the_reminder_period_once_per_expiry() -> None:
    concession = ConcessionEligibility(UNTIL)
    early = remind_unridden_card("C1", concession, None, date(2026, 3, 2), 7, NOW)
    due = remind_unridden_card("C1", concession, None, date(2026, 3, 6), 7, NOW)
    again = remind_unridden_card("C1", concession, UNTIL, date(2026, 3, 7), 7, NOW)
    renewed = remind_unridden_card("C1", ConcessionEligibility(date(2026, 3, 12)), UNTIL,
                                   date(2026, 3, 7), 7, NOW)
    assert early is None and again is None
    assert due is not None and (due.card_uid, due.valid_until, due.days_left) == ("C1", UNTIL, 4)
    assert renewed is not None and renewed.days_left == 5


def test_a_card_without_a_concession_is_never_reminded() -> None:
    assert remind_unridden_card("C1", None, None, date(2026, 3, 6), 7, NOW) is None
