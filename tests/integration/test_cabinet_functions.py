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
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
)
from contracts.types import GuardianRole
from contracts.wallet import GetBalance, GetControls, SaveTopUpTemplate, TagStatementLine
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
        # The services answer once the broker gave them their partitions: right after another
        # module's instance of the same group stopped, that takes the session timeout (~18 s).
        probe = f"{random.randrange(10**7, 10**8)}"
        support = issue_access_token(infra["AUTH_PRIVATE_KEY"], account_id="acc_cabprobe01",
                                     session_id=uid("ses"), role=Role.SUPPORT,
                                     now=clock.now.timestamp())
        for query in (a.GetEntryLog(contract=probe, date_from=WEEK[0].isoformat(),
                                    date_to=WEEK[0].isoformat()), GetBalance(contract=probe)):
            answer = await req.send(query, probe, token=support, timeout=120)
            assert answer.json()["ok"] is False  # unknown_student / unknown_contract
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


# --- wallet: tags and search of the statement, saved top-up templates ---------------------------

async def paid_lunches(cab: Cabinet) -> tuple[CardIssued, dict[str, str]]:
    """A child with a 500 ₽ top-up, a borscht (120 ₽) and a bun (35 ₽): operation ids by name."""
    card = await cab.card(uid("shop").lower())
    payment = TopUpReceived(payment_id=uid("pay"), contract=card.contract, amount=500_00,
                            sub_balance="canteen", channel="bank_card", paid_at=cab.clock.now)
    async with TopicReader(cab.req.bootstrap, "wallet.events.v1") as events:
        await cab.pub.publish(payment, card.contract)
        # top-ups and sales travel on different topics: the sales wait for the money
        await events.wait_for(lambda r: r.key == card.contract
                              and r.type.endswith("TopUpApplied"), timeout=60)
    ids = {"topup": payment.payment_id}
    async with TopicReader(cab.req.bootstrap, "wallet.sale-decisions.v1") as decisions:
        for name, price in (("Борщ", 120_00), ("Булочка", 35_00)):
            sale = CanteenSaleRequested(
                sale_id=uid("sale"), terminal_id="till-1", school_id=card.school_id,
                card_uid=card.card_uid, items=[SaleItem(sku=uid("sku"), name=name,
                                                        category="hot_meal", allergens=[],
                                                        qty=1, unit_price=price)],
                sold_at=cab.clock.now)
            await cab.pub.publish(sale, sale.card_uid)
            [decision] = await decisions.wait_for(lambda r, s=sale: r.json()["sale_id"] ==
                                                  s.sale_id)
            assert decision.json()["approved"] is True
            ids[name] = sale.sale_id
    return card, ids


async def test_a_parent_tags_statement_lines_and_searches_by_text_tag_and_amount(
        cabinet: Cabinet) -> None:
    card, ids = await paid_lunches(cabinet)
    parent = cabinet.token(card.contract, guardian=GuardianRole.CO_GUARDIAN)
    base = f"/v1/children/{card.contract}/statement"
    for operation, tags in ((ids["Борщ"], ["#Обеды", "школа", "обеды"]),
                            (ids["Булочка"], ["перекус"]), (ids["topup"], ["школа"])):
        tagged = await cabinet.send("PUT", f"{base}/{operation}/tags", parent, {"tags": tags})
        assert tagged.status_code == 200, tagged.text

    async def lines(**params: Any) -> list[tuple[str, list[str]]]:
        answer = await cabinet.get(base, parent, **params)
        assert answer.status_code == 200, answer.text
        return [(x["operation_id"], x["tags"]) for x in answer.json()["lines"]]

    assert await lines() == [(ids["topup"], ["школа"]), (ids["Борщ"], ["обеды", "школа"]),
                             (ids["Булочка"], ["перекус"])]
    assert [o for o, _ in await lines(tag="ШКОЛА")] == [ids["topup"], ids["Борщ"]]
    assert [o for o, _ in await lines(text="борщ")] == [ids["Борщ"]]
    assert [o for o, _ in await lines(amount_min=100_00, amount_max=200_00)] == [ids["Борщ"]]
    assert [o for o, _ in await lines(amount_max=50_00, kinds="sale")] == [ids["Булочка"]]
    assert await lines(tag="обеды", text="булочка") == []
    csv_text = (await cabinet.get(base, parent, tag="перекус", format="csv")).text
    assert list(csv.reader(io.StringIO(csv_text)))[1][-1] == "#перекус"

    # Clearing, a line the account does not have, too many tags, a stranger.
    cleared = await cabinet.send("PUT", f"{base}/{ids['Булочка']}/tags", parent, {"tags": []})
    assert cleared.status_code == 200
    assert await lines(tag="перекус") == []
    unknown = await cabinet.send("PUT", f"{base}/{uid('sale')}/tags", parent, {"tags": ["x"]})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_operation")
    many = await cabinet.send("PUT", f"{base}/{ids['Борщ']}/tags", parent,
                              {"tags": ["a", "b", "c", "d", "e", "f"]})
    assert many.status_code == 422
    bad = await cabinet.req.send(
        TagStatementLine(request_id=uid("tag"), contract=card.contract,
                         operation_id=ids["Борщ"], tags=["a/b"]),
        card.contract, token=parent)
    assert bad.json()["error"]["code"] == "invalid_tags"
    stranger = await cabinet.send("PUT", f"{base}/{ids['Борщ']}/tags",
                                  cabinet.token(f"{random.randrange(10**7, 10**8)}"),
                                  {"tags": ["x"]})
    assert stranger.status_code == 403
    assert [t for o, t in await lines() if o == ids["Борщ"]] == [["обеды", "школа"]]


async def test_a_parent_saves_changes_lists_and_deletes_top_up_templates(
        cabinet: Cabinet) -> None:
    card = await cabinet.card(uid("tpl").lower())
    parent = cabinet.token(card.contract)
    base = f"/v1/children/{card.contract}/top-up-templates"

    async def listed() -> list[tuple[str, int, str]]:
        answer = await cabinet.get(base, parent)
        assert answer.status_code == 200, answer.text
        return [(t["name"], t["amount"], t["sub_balance"]) for t in answer.json()["templates"]]

    created = await cabinet.send("POST", base, parent, {"name": "Обеды", "amount": 1500_00})
    assert created.status_code == 200, created.text
    lunch_id = created.json()["request_id"]
    fares = await cabinet.send("POST", base, parent, {"name": "Проезд", "amount": 500_00,
                                                      "sub_balance": "transit"})
    assert fares.status_code == 200
    assert await listed() == [("Обеды", 1500_00, "canteen"), ("Проезд", 500_00, "transit")]
    changed = await cabinet.send("PUT", f"{base}/{lunch_id}", parent,
                                 {"name": "Обеды на неделю", "amount": 2000_00})
    assert changed.status_code == 200
    same_name = await cabinet.send("POST", base, parent, {"name": "проезд", "amount": 1_00})
    assert (same_name.status_code, same_name.json()["code"]) == (409, "template_name_conflict")
    for n in range(8):
        assert (await cabinet.send("POST", base, parent,
                                   {"name": f"Кружок {n}", "amount": 100_00})).status_code == 200
    eleventh = await cabinet.send("POST", base, parent, {"name": "Лишний", "amount": 1_00})
    assert (eleventh.status_code, eleventh.json()["code"]) == (422, "too_many_templates")
    templates = await listed()
    assert len(templates) == 10 and templates[0] == ("Обеды на неделю", 2000_00, "canteen")

    deleted = await cabinet.send("DELETE", f"{base}/{lunch_id}", parent)
    assert deleted.status_code == 200
    again = await cabinet.send("DELETE", f"{base}/{lunch_id}", parent)
    assert (again.status_code, again.json()["code"]) == (404, "unknown_template")
    assert [n for n, _, _ in await listed()][:2] == ["Проезд", "Кружок 0"]
    assert len(await listed()) == 9
    unknown = await cabinet.req.send(SaveTopUpTemplate(
        request_id=uid("tpl"), contract=card.contract, template_id=uid("tpl"), name="Нет",
        amount=1_00), card.contract, token=parent)
    assert unknown.json()["error"]["code"] == "unknown_template"
    stranger = await cabinet.get(base, cabinet.token(f"{random.randrange(10**7, 10**8)}"))
    assert stranger.status_code == 403
    staff = await cabinet.get(base, cabinet.token(role=Role.SUPPORT))
    assert staff.status_code == 403


# --- wallet: the parent controls read back ------------------------------------------------------

async def test_a_parent_reads_back_the_controls_set_through_the_gateway_and_the_broker(
        cabinet: Cabinet) -> None:
    card = await cabinet.card(uid("ctl").lower())
    parent = cabinet.token(card.contract)
    base = f"/v1/children/{card.contract}"
    fresh = await cabinet.get(f"{base}/controls", parent)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["daily_limits"] == {"total": None, "canteen": None, "general": None}
    assert fresh.json()["blocked_categories"] == [] and fresh.json()["card_blocked"] is False

    assert (await cabinet.send("PATCH", f"{base}/controls", parent, {
        "daily_limits": {"canteen": 120_00}, "blocked_categories": ["sweets"],
        "allergens": ["nuts"], "low_balance_threshold": 200_00})).status_code == 200
    assert (await cabinet.send("PUT", f"{base}/auto-top-up", parent, {
        "enabled": True, "threshold": 100_00, "amount": 500_00})).status_code == 200
    assert (await cabinet.send("POST", f"{base}/block", parent, {"reason": "lost"})
            ).status_code == 200
    read = (await cabinet.get(f"{base}/controls", parent)).json()
    assert read["daily_limits"] == {"total": None, "canteen": 120_00, "general": None}
    assert (read["blocked_categories"], read["allergens"]) == (["sweets"], ["nuts"])
    assert read["low_balance_threshold"] == 200_00
    assert read["auto_top_up"] == {"enabled": True, "threshold": 100_00, "amount": 500_00,
                                   "sub_balance": "canteen"}
    assert (read["card_blocked"], read["block_reason"]) == (True, "lost")

    # the same query straight on the broker, and a stranger refused
    on_broker = await cabinet.req.send(GetControls(contract=card.contract), card.contract,
                                       token=parent)
    assert on_broker.type.endswith("ControlsReply")
    assert on_broker.json()["daily_limits"]["canteen"] == 120_00
    stranger = await cabinet.get(f"{base}/controls",
                                 cabinet.token(f"{random.randrange(10**7, 10**8)}"))
    assert (stranger.status_code, stranger.json()["code"]) == (403, "forbidden")


# --- staff views: the class register and the canteen's day -------------------------------------

async def test_a_teacher_reads_the_class_register_and_an_admin_the_sales_report_by_http(
        cabinet: Cabinet) -> None:
    school_id, card = await school_week(cabinet)
    teacher = cabinet.token(role=Role.TEACHER, school_id=school_id)
    register = f"/v1/schools/{school_id}/classes/{card.class_name}/register"
    monday = await cabinet.get(register, teacher, date=WEEK[0].isoformat())
    assert monday.status_code == 200, monday.text
    [line] = [x for x in monday.json()["lines"] if x["contract"] == card.contract]
    assert (line["absent"], line["late"]) == (False, False)
    assert line["arrived_at"].startswith(local(WEEK[0], "08:05").strftime("%Y-%m-%dT%H:%M"))
    tuesday = await cabinet.get(register, teacher, date=WEEK[1].isoformat(), format="csv")
    assert tuesday.status_code == 200 and tuesday.headers["content-type"].startswith("text/csv")
    assert card.contract in tuesday.text and tuesday.text.count("\n") >= 2
    elsewhere = await cabinet.get(register, cabinet.token(role=Role.TEACHER,
                                                          school_id="cab-elsewhere"),
                                  date=WEEK[0].isoformat())
    assert (elsewhere.status_code, elsewhere.json()["code"]) == (403, "forbidden")
    parent = await cabinet.get(register, cabinet.token(card.contract), date=WEEK[0].isoformat())
    assert parent.status_code == 403

    # the canteen's Friday: one lunch sold at the school's till
    await cabinet.pub.publish(TopUpReceived(
        payment_id=uid("pay"), contract=card.contract, amount=500_00, channel="terminal",
        paid_at=local(WEEK[4], "07:00")), card.contract)
    sale = CanteenSaleRequested(
        sale_id=uid("sale"), terminal_id="cab-till-1", school_id=school_id,
        card_uid=card.card_uid, sold_at=local(WEEK[4], "12:00"),
        items=[SaleItem(sku="lunch", name="Обед", category="hot_meal", qty=1,
                        unit_price=150_00)])
    admin = cabinet.token(role=Role.SCHOOL_ADMIN, school_id=school_id)
    report_path = f"/v1/schools/{school_id}/sales-report"

    async def sold() -> dict[str, Any] | None:
        answer = await cabinet.get(report_path, admin, date=WEEK[4].isoformat())
        assert answer.status_code == 200, answer.text
        return answer.json() if answer.json()["approved_sales"] == 1 else None

    async with TopicReader(cabinet.req.bootstrap, "wallet.sale-decisions.v1") as decisions:
        await eventually(lambda: _balance_is(cabinet, card.contract, 500_00),
                         what="the top-up before the lunch")
        await cabinet.pub.publish(sale, sale.card_uid)
        await decisions.wait_for(lambda r: r.json()["sale_id"] == sale.sale_id)
    report = await eventually(sold, what="the lunch in the sales report")
    assert (report["school_id"], report["date"], report["approved_amount"]) == (
        school_id, WEEK[4].isoformat(), 150_00)
    supplier = await cabinet.get(report_path, cabinet.token(role=Role.CANTEEN_OPERATOR,
                                                           school_id=school_id),
                                 date=WEEK[4].isoformat())
    assert supplier.status_code == 200 and supplier.json()["approved_sales"] == 1
    refused = await cabinet.get(report_path, teacher, date=WEEK[4].isoformat())
    # a teacher's token is not even meant for wallet: refused there, 403 here
    assert (refused.status_code, refused.json()["code"]) == (403, "wrong_audience"), refused.text


async def _balance_is(cabinet: Cabinet, contract: str, general: int) -> bool:
    answer = await cabinet.get(f"/v1/children/{contract}/balance",
                               cabinet.token(contract))
    return answer.status_code == 200 and answer.json()["balances"]["general"] == general
