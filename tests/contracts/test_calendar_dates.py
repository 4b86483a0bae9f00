"""A date of the right shape that is not a day of the calendar is refused at the edge (it
used to reach the services and fail their handlers on every delivery)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import auth, notify

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("day", ["2026-13-01", "2026-02-30", "7048-24-82"])
def test_a_date_outside_the_calendar_is_refused_in_a_query_and_in_a_child_link(
        day: str) -> None:
    with pytest.raises(ValidationError, match="not a calendar date"):
        notify.GetJourney(contract="12345678", date=day)
    with pytest.raises(ValidationError, match="not a calendar date"):
        auth.LinkChild(request_id="link-0000000000001", contract="12345678", birth_date=day)


def test_a_calendar_date_is_kept_as_given() -> None:
    assert notify.GetJourney(contract="12345678", date="2028-02-29").date == "2028-02-29"
    link = auth.LinkChild(request_id="link-0000000000001", contract="12345678",
                          birth_date="2014-03-08")
    assert link.birth_date == "2014-03-08"
