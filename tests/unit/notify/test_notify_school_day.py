"""The child's days are the school's: notify learns the school's time zone from wallet's
AccountOpened, counts the journey's days in it, and answers "today" as the school counts it
(NOTIFY_SCHOOL_TIME_ZONE until it knows)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from contracts import access, wallet
from contracts import notify as wire
from contracts.auth import ChildGrant
from contracts.types import GuardianRole
from tests.unit.fakes import FakeRuntime, plain_dialect
from tests.unit.notify.test_notify_handlers import ACCOUNT, CONTRACT, _notify, example

pytestmark = pytest.mark.unit

# 13:00 UTC: 17:00 on 1 September in Samara (UTC+4), 01:00 on 2 September in Kamchatka (UTC+12)
EVENING = datetime(2026, 9, 1, 13, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


async def _journey(rt: FakeRuntime, h, date: str | None = None) -> wire.JourneyReply:
    parent = rt.token(account_id=ACCOUNT,
                      children=[ChildGrant(contract=CONTRACT, role=GuardianRole.PRIMARY)])
    rt.fake_uow.replies.clear()
    await h.on_get_journey(rt.inbound(wire.GetJourney(contract=CONTRACT, date=date),
                                      token=parent))
    reply = rt.reply()
    assert isinstance(reply, wire.JourneyReply), reply
    return reply


async def test_today_is_the_schools_day_in_the_schools_time_zone() -> None:
    rt, h, _ = await _notify()
    rt.now = EVENING
    before = await _journey(rt, h)  # the zone not known yet: NOTIFY_SCHOOL_TIME_ZONE
    assert (before.date, before.today, before.time_zone) == ("2026-09-01", "2026-09-01",
                                                             "Europe/Samara")
    opened = wallet.AccountOpened(contract=CONTRACT, school_id="kam-school-1",
                                  opened_at=EVENING, time_zone="Asia/Kamchatka")
    msg = rt.inbound(opened, key=CONTRACT)
    await h.on_account_opened(msg)
    await rt.redelivered_changes_nothing(h.on_account_opened, msg)
    after = await _journey(rt, h)
    assert (after.date, after.today, after.time_zone) == ("2026-09-02", "2026-09-02",
                                                          "Asia/Kamchatka")
    asked = await _journey(rt, h, "2026-09-01")  # a day asked is the day answered
    assert (asked.date, asked.today) == ("2026-09-01", "2026-09-02")


async def test_a_gate_entry_lands_on_the_schools_day() -> None:
    rt, h, _ = await _notify()
    rt.now = EVENING
    await h.on_account_opened(rt.inbound(wallet.AccountOpened(
        contract=CONTRACT, school_id="kam-school-1", opened_at=EVENING,
        time_zone="Asia/Kamchatka"), key=CONTRACT))
    await h.on_entered(rt.inbound(example(access.StudentEntered, at=EVENING,
                                          local_date="2026-09-02"), key=CONTRACT))
    today = await _journey(rt, h)
    assert today.date == "2026-09-02" and [s.kind for s in today.steps] == ["entry"]
    assert (await _journey(rt, h, "2026-09-01")).steps == []
