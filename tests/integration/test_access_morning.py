"""A school morning through the real broker and MongoDB-protocol server: students enter through
10 gates (some late, some absent), the clock passes the absence cut-off, afternoon exits close
the day and the gates' closing closes the rest; the class register, a guard's manual entry and
a student's statistics (CSV and SVG chart) are then asked for as an app would. 300 students in
the regular run, 2,000 under ``-m slow``."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.access import (
    DayHours,
    GetClassRegister,
    GetStudentStats,
    RecordManualEntry,
    SessionSlot,
    SetSchoolSchedule,
)
from contracts.auth import ChildGrant, Role
from contracts.integrations import CardIssued, GateTapped
from contracts.types import GuardianRole
from services.runtime.tokens import issue_access_token
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.integration

ZONE_NAME = "Europe/Samara"
ZONE = ZoneInfo(ZONE_NAME)
DAY = date.today() - timedelta(days=date.today().weekday() + 21)  # a Monday three weeks ago
CLASSES = ("5A", "5B", "6A", "7B")


def local(hhmm: str) -> datetime:
    return datetime.combine(DAY, time.fromisoformat(hhmm), tzinfo=ZONE).astimezone(UTC)


async def distinct(reader: TopicReader, predicate: Any, field: str, count: int,
                   timeout: float) -> list[dict[str, Any]]:
    """Wait for ``count`` records with distinct ``field`` values (the outbox relay publishes at
    least once, so a copy may repeat); return one payload per value."""
    async def check() -> list[dict[str, Any]] | None:
        found = {r.json()[field]: r.json() for r in await reader.poll() if predicate(r)}
        return list(found.values()) if len(found) >= count else None
    return await eventually(check, timeout=timeout, what=f"{count} distinct {field}")


def token(key: str, clock: FakeClock, role: Role, school_id: str | None = None,
          children: list[ChildGrant] | None = None) -> str:
    return issue_access_token(key, account_id=f"acc_{uid('a')[2:]}", session_id=uid("s"),
                              role=role, school_id=school_id, children=children or [],
                              now=clock.now.timestamp())


@pytest.mark.parametrize("students", [
    300, pytest.param(2000, marks=[pytest.mark.slow, pytest.mark.timeout(900)])])
async def test_a_morning_of_students_gives_the_right_register_late_absence_and_closing_events(
        students: int, service_runner: Any, bootstrap: str, infra: dict[str, str]) -> None:
    rnd = random.Random()
    school_id = f"morning-{uid('s')[2:].lower()}"
    clock = FakeClock(local("07:00"))
    contracts = [str(c) for c in rnd.sample(range(10**7, 10**8), students)]
    cards = [CardIssued(contract=c, card_uid=chip_uid(rnd), school_id=school_id,
                        school_tz=ZONE_NAME, student_id=uid("stu"), class_name=CLASSES[i % 4],
                        birth_date=date(2014, 3, 8), issued_at=local("06:00") - timedelta(days=30))
             for i, c in enumerate(contracts)]
    # 1 in 20 absent, 1 in 10 late (after the 08:30 bell), the rest between 07:30 and 08:29.
    absent = {c.contract for i, c in enumerate(cards) if i % 20 == 7}
    late = {c.contract for i, c in enumerate(cards) if i % 10 == 3}
    present = [c for c in cards if c.contract not in absent]
    arrivals = {c.contract: local("08:31") + timedelta(seconds=rnd.randrange(3000))
                if c.contract in late else
                local("07:30") + timedelta(seconds=rnd.randrange(3540)) for c in present}
    taps = [GateTapped(tap_id=uid("in"), gate_id=f"{school_id}-gate-{i % 10}",
                       school_id=school_id, card_uid=c.card_uid, direction="in",
                       tapped_at=arrivals[c.contract]) for i, c in enumerate(present)]
    leavers = present[: len(present) // 2]  # the others never tap out: the gates' close ends it
    key = infra["AUTH_PRIVATE_KEY"]
    admin = token(key, clock, Role.SCHOOL_ADMIN, school_id)
    schedule = SetSchoolSchedule(
        request_id=uid("sched"), school_id=school_id, time_zone=ZONE_NAME,
        hours=[DayHours(weekday=w, opens="07:00", closes="19:00", first_lesson="08:30")
               for w in range(5)],
        absence_cutoff="10:00",
        sessions=[SessionSlot(name="Уроки", weekday=w, start="08:30", end="13:50", group=k)
                  for w in range(5) for k in CLASSES])

    def ours(r: Any) -> bool:
        return r.json().get("school_id") == school_id

    async with service_runner("access", clock=clock, sweep_interval_s=0.5,
                              sweep_batch=250), \
            Integrator(bootstrap) as pub, Requester(bootstrap) as req, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow_list, \
            TopicReader(bootstrap, "access.gate-decisions.v1") as decisions, \
            TopicReader(bootstrap, "access.events.v1") as events:
        assert (await req.send(schedule, school_id, token=admin)).json()["ok"] is True
        for wave in range(0, len(cards), 50):
            for card in cards[wave:wave + 50]:
                await pub.publish(card, card.contract)
            await distinct(allow_list, ours, "card_uid", min(students, wave + 50), 120)

        clock.now = local("09:20")  # the controllers' taps arrive in a morning burst
        # Published in waves of 50 (each gate's queue at the bell): the dev database serialises
        # transactions, and an endless burst starves the outbox relay (see the report).
        decided: list[dict[str, Any]] = []
        for wave in range(0, len(taps), 50):
            chunk = taps[wave:wave + 50]
            for t in chunk:
                await pub.publish(t, t.card_uid)
            ids = {t.tap_id for t in chunk}
            decided += await distinct(decisions, lambda r, ids=ids: r.json()["tap_id"] in ids,
                                      "tap_id", len(ids), 120)
        assert [d for d in decided if not d["allowed"]] == []
        assert {r.key for r in decisions.records} >= {f"{school_id}-gate-{g}" for g in range(10)}

        clock.now = local("10:01")  # past the absence cut-off: the sweep reports the absent
        absences = await distinct(events, lambda r: ours(r) and r.type.endswith("AbsenceDetected"),
                                  "contract", len(absent), 90)
        lates = {r.json()["contract"]: r.json() for r in events.records
                 if ours(r) and r.type.endswith("LateArrivalDetected")}
        entered = {r.json()["tap_id"] for r in events.records
                   if ours(r) and r.type.endswith("StudentEntered")}

        # A guard lets an absent child in by hand at 10:15 (forgotten card).
        clock.now = local("10:15")
        forgot = sorted(absent)[0]
        manual = RecordManualEntry(request_id=uid("man"), school_id=school_id, contract=forgot,
                                   guard_id="guard-1", at=clock.now)
        guard = token(key, clock, Role.SCHOOL_ADMIN, school_id)
        accepted = (await req.send(manual, school_id, token=guard)).json()
        assert accepted["ok"] is True, accepted

        clock.now = local("14:05")
        exits = [GateTapped(tap_id=uid("out"), gate_id=f"{school_id}-gate-0", school_id=school_id,
                            card_uid=c.card_uid, direction="out",
                            tapped_at=local("13:55") + timedelta(seconds=i % 600))
                 for i, c in enumerate(leavers)]
        for t in exits:
            await pub.publish(t, t.card_uid)
        closed_by_exit = await distinct(
            events, lambda r: ours(r) and r.type.endswith("AttendanceDayClosed")
            and r.json()["closed_by"] == "last_exit", "contract", len(leavers),
            30 + len(exits) / 2)
        clock.now = local("19:01")  # the gates close: every open day is closed
        closed_all = await distinct(
            events, lambda r: ours(r) and r.type.endswith("AttendanceDayClosed"), "contract",
            len(present) + 1, 90)

        register = await req.send(GetClassRegister(school_id=school_id, class_name="5A",
                                                    local_date=DAY.isoformat(), csv=True),
                                   school_id, token=token(key, clock, Role.TEACHER, school_id))
        late_one = next(c for c in present if c.contract in late)
        parent = token(key, clock, Role.PARENT,
                       children=[ChildGrant(contract=late_one.contract, role=GuardianRole.PRIMARY)])
        stats = await req.send(GetStudentStats(contract=late_one.contract,
                                               date_from=DAY.isoformat(),
                                               date_to=(DAY + timedelta(days=6)).isoformat(),
                                               csv=True, chart=True),
                               late_one.contract, token=parent)
        stranger = token(key, clock, Role.PARENT)
        refused = await req.send(GetStudentStats(contract=late_one.contract,
                                                 date_from=DAY.isoformat(),
                                                 date_to=DAY.isoformat()),
                                 late_one.contract, token=stranger)

    assert sorted(a["contract"] for a in absences) == sorted(absent)
    assert all(a["local_date"] == DAY.isoformat() for a in absences)
    assert sorted(lates) == sorted(late)
    for body in lates.values():
        assert body["lesson_start"] == "08:30" and body["minutes_late"] >= 1
    assert entered == {t.tap_id for t in taps}
    assert {c["contract"] for c in closed_by_exit} == {c.contract for c in leavers}
    by_end = [c for c in closed_all if c["closed_by"] == "end_of_day"]
    assert {b["contract"] for b in by_end} == \
        {c.contract for c in present[len(leavers):]} | {forgot}
    manual_events = {(r.json()["contract"], r.json()["guard_id"]) for r in events.records
                     if ours(r) and r.type.endswith("ManualEntryRecorded")}
    assert manual_events == {(forgot, "guard-1")}

    reply = register.json()
    assert reply["ok"] is True
    lines = {line["contract"]: line for line in reply["lines"]}
    in_5a = {c.contract for i, c in enumerate(cards) if CLASSES[i % 4] == "5A"}
    assert set(lines) == in_5a
    for contract, line in lines.items():
        manual_in = contract == forgot
        assert line["absent"] is (contract in absent and not manual_in)
        assert line["late"] is (contract in late or manual_in)
        assert (line["arrived_at"] is None) is (contract in absent and not manual_in)
    assert reply["csv"].startswith("date,contract,class,arrived,left,late,absent,manual\r\n")
    assert reply["csv"].count("\r\n") == len(in_5a) + 1

    summary = stats.json()
    assert summary["ok"] is True and summary["days_present"] == 1 and summary["late_count"] == 1
    local_arrival = arrivals[late_one.contract].astimezone(ZONE)
    assert summary["average_arrival"] == local_arrival.strftime("%H:%M")
    assert summary["csv"].splitlines()[1].startswith(f"{late_one.contract},{DAY.isoformat()},")
    assert summary["chart_svg"].startswith("<?xml") and 'class="arrival late"' in \
        summary["chart_svg"]
    assert refused.json()["ok"] is False and refused.json()["error"]["code"] == "forbidden"
