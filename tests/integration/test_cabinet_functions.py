"""The cabinet functions of issue 17 end to end: access and wallet in-process against the real
broker and the real MongoDB-protocol server, the gateway in-process in front of them (httpx over
ASGI), all on one FakeClock. Each function is asked through the gateway (HTTP -> command or
query on Kafka -> the service -> its reply) and, where the gateway cannot tell, straight on
the broker.

- the entry log of any period, paged, for the parents and the child's own school's staff;
- attendance statistics by month with the absent days, with CSV;
- tags on statement lines and the statement searched by text, tag and amount range;
- saved top-up templates per child.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from contracts import access as a
from contracts.auth import ChildGrant, Role
from contracts.integrations import CardIssued, GateTapped
from contracts.types import GuardianRole
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.tokens import issue_access_token
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.integration

ZONE_NAME = "Europe/Samara"
ZONE = ZoneInfo(ZONE_NAME)
MONDAY = date.today() - timedelta(days=date.today().weekday() + 7)  # last week's Monday
WEEK = [MONDAY + timedelta(days=n) for n in range(5)]


def local(day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=ZONE).astimezone(UTC)


@dataclass
class Cabinet:
    clock: FakeClock
    infra: dict[str, str]
    pub: Integrator
    req: Requester
    http: httpx.AsyncClient
    allow: TopicReader
    wallet_events: TopicReader

    def token(self, contract: str | None = None, *, role: Role = Role.PARENT,
              school_id: str | None = None,
              guardian: GuardianRole = GuardianRole.PRIMARY) -> str:
        children = [ChildGrant(contract=contract, role=guardian)] if contract else []
        return issue_access_token(self.infra["AUTH_PRIVATE_KEY"],
                                  account_id=f"acc_{uuid.uuid4().hex[:12]}",
                                  session_id=uid("ses"), role=role, school_id=school_id,
                                  children=children, now=self.clock.now.timestamp())

    async def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params,
                                   headers={"Authorization": f"Bearer {token}"})

    async def send(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, path, json=body, headers={
            "Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())})

    async def card(self, school_id: str) -> CardIssued:
        """A card issued at ``school_id``, known to access (allow-list) and wallet (opened)."""
        card = CardIssued(contract=f"{random.randrange(10**7, 10**8)}", card_uid=chip_uid(),
                          school_id=school_id, school_tz=ZONE_NAME, student_id=uid("stu"),
                          class_name="5A", birth_date=date(2014, 3, 8),
                          issued_at=local(MONDAY, "06:00") - timedelta(days=30))
        await self.pub.publish(card, card.contract)
        await self.allow.wait_for(lambda r: r.key == card.card_uid)
        await self.wallet_events.wait_for(
            lambda r: r.key == card.contract and r.type.endswith(".AccountOpened"))
        return card


@pytest.fixture(scope="module")
async def cabinet(service_runner: Any, bootstrap: str,
                  infra: dict[str, str]) -> AsyncIterator[Cabinet]:
    clock = FakeClock(local(WEEK[-1], "18:00"))  # Friday evening: the week is judged
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"it-{uuid.uuid4().hex[:8]}", request_timeout_s=30)
    gw = Gateway(settings, clock=lambda: clock.now.timestamp())
    # outbox_takeover_s: see tests/integration/test_wallet_flows.py (fake-clock records).
    async with service_runner("access", clock=clock, outbox_takeover_s=1e9), \
            service_runner("wallet", clock=clock, outbox_takeover_s=1e9), \
            Integrator(bootstrap) as pub, Requester(bootstrap) as req, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow, \
            TopicReader(bootstrap, "wallet.events.v1") as wallet_events:
        await gw.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.api),
                                         base_url="http://gw", timeout=60) as http:
                yield Cabinet(clock, infra, pub, req, http, allow, wallet_events)
        finally:
            await gw.stop()


# --- access: the entry log and the statistics by month -----------------------------------------

async def school_week(cab: Cabinet) -> tuple[str, CardIssued]:
    """A school with lessons Monday to Friday and a child who came Monday (in and out),
    Wednesday (late) and Friday, and stayed away Tuesday and Thursday."""
    school_id = f"cab-{uid('s')[2:].lower()}"
    admin = cab.token(role=Role.SCHOOL_ADMIN, school_id=school_id)
    schedule = a.SetSchoolSchedule(
        request_id=uid("sched"), school_id=school_id, time_zone=ZONE_NAME,
        hours=[a.DayHours(weekday=w, opens="07:00", closes="19:00", first_lesson="08:30")
               for w in range(5)], absence_cutoff="10:00")
    assert (await cab.req.send(schedule, school_id, token=admin)).json()["ok"] is True
    card = await cab.card(school_id)
    taps = [("in", local(WEEK[0], "08:05")), ("out", local(WEEK[0], "14:00")),
            ("in", local(WEEK[2], "08:45")), ("in", local(WEEK[4], "08:10"))]
    async with TopicReader(cab.req.bootstrap, "access.gate-decisions.v1") as decisions:
        sent = []
        for direction, at in taps:
            t = GateTapped(tap_id=uid("tap"), gate_id="gate-1", school_id=school_id,
                           card_uid=card.card_uid, direction=direction, tapped_at=at)
            await cab.pub.publish(t, t.card_uid)
            sent.append(t.tap_id)

        async def decided() -> bool:
            return {r.json()["tap_id"] for r in await decisions.poll()} >= set(sent)
        await eventually(decided, what="every tap of the week decided")
    return school_id, card


async def test_a_parent_reads_the_entry_log_of_a_week_in_pages_through_the_gateway(
        cabinet: Cabinet) -> None:
    school_id, card = await school_week(cabinet)
    parent = cabinet.token(card.contract, guardian=GuardianRole.CO_GUARDIAN)
    path = f"/v1/children/{card.contract}/entries"
    days: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params = {"date_from": WEEK[0].isoformat(), "date_to": WEEK[-1].isoformat(), "limit": 2}
        answer = await cabinet.get(path, parent, **params, **({"cursor": cursor} if cursor
                                                             else {}))
        assert answer.status_code == 200, answer.text
        days += answer.json()["days"]
        pages += 1
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [x["local_date"] for x in days] == [d.isoformat() for d in WEEK]
    assert [x["absent"] for x in days] == [False, True, False, True, False]
    assert [x["late"] for x in days] == [False, False, True, False, False]
    monday = days[0]
    assert [(p["direction"], p["source"], p["gate_id"]) for p in monday["passages"]] == [
        ("in", "tap", "gate-1"), ("out", "tap", "gate-1")]
    assert monday["left_at"].startswith(local(WEEK[0], "14:00").strftime("%Y-%m-%dT%H:%M"))

    # On the broker too, for the child's own school's teacher; not for another school's.
    query = a.GetEntryLog(contract=card.contract, date_from=WEEK[0].isoformat(),
                          date_to=WEEK[-1].isoformat())
    own = await cabinet.req.send(query, card.contract, token=cabinet.token(
        role=Role.TEACHER, school_id=school_id))
    assert [x["absent"] for x in own.json()["days"]] == [False, True, False, True, False]
    other = await cabinet.req.send(query, card.contract, token=cabinet.token(
        role=Role.TEACHER, school_id="cab-elsewhere"))
    assert other.json()["error"]["code"] == "forbidden"


async def test_the_entry_log_refuses_a_stranger_and_a_period_over_366_days(
        cabinet: Cabinet) -> None:
    _, card = await school_week(cabinet)
    path = f"/v1/children/{card.contract}/entries"
    stranger = await cabinet.get(path, cabinet.token(f"{random.randrange(10**7, 10**8)}"),
                                 date_from=WEEK[0].isoformat(), date_to=WEEK[-1].isoformat())
    assert stranger.status_code == 403 and stranger.json()["code"] == "forbidden"
    long = await cabinet.get(path, cabinet.token(card.contract),
                             date_from=(WEEK[-1] - timedelta(days=366)).isoformat(),
                             date_to=WEEK[-1].isoformat())
    assert long.status_code == 422 and long.json()["code"] == "invalid_period"


async def test_statistics_by_month_name_the_absent_days_with_a_csv(cabinet: Cabinet) -> None:
    _, card = await school_week(cabinet)
    answer = await cabinet.get(f"/v1/children/{card.contract}/attendance",
                               cabinet.token(card.contract), date_from=WEEK[0].isoformat(),
                               date_to=WEEK[-1].isoformat(), by_month="true", csv="true")
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    absent = [WEEK[1].isoformat(), WEEK[3].isoformat()]
    assert (stats["days_present"], stats["late_count"], stats["lesson_days"]) == (3, 1, 5)
    assert stats["absent_days"] == absent
    months = sorted({d.strftime("%Y-%m") for d in WEEK})  # the week may straddle two months
    assert [m["month"] for m in stats["months"]] == months
    assert [x for m in stats["months"] for x in m["absent_days"]] == absent
    assert sum(m["days_present"] for m in stats["months"]) == 3
    assert sum(m["late_count"] for m in stats["months"]) == 1
    rows = list(csv.reader(io.StringIO(stats["csv"])))
    assert rows[0][-1] == "absent_days"
    assert len(rows) == 1 + len(months) + 1
    assert rows[-1][-1] == " ".join(absent)
