"""notify's cabinet queries and support requests through the real broker and the real
MongoDB-protocol server: the journal filtered, preferences read back with the service
switches, devices listed and removed, and a support request answered with the parent told by
push (the local HTTP sink); and the same calls through the gateway (HTTP -> Kafka -> notify)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from contracts.access import StudentEntered, StudentLeft
from contracts.auth import ChildGrant, Role
from contracts.notify import (
    AnswerSupportRequest,
    GetJournal,
    GetPreferences,
    GetSupportRequest,
    GetSupportRequests,
    ListPushTokens,
    OpenSupportRequest,
    RemovePushToken,
    SetPreferences,
)
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.tokens import issue_access_token
from tests.integration.notify_support import (
    TZ,
    as_awaitable,
    contract,
    http_to,
    make_guardian,
    notify_stack,
    token,
)
from tests.support import eventually, uid

pytestmark = pytest.mark.integration

SCHOOL = "izh-school-42"


@pytest.fixture(scope="module")
async def stack(service_runner, bootstrap, infra, tmp_path_factory) -> Any:
    async with notify_stack(service_runner, bootstrap, infra,
                            tmp_path_factory.mktemp("notify-cabinet-sinks")) as running:
        yield running


@pytest.fixture(scope="module")
async def http(stack, infra) -> Any:
    """The gateway in-process in front of notify (httpx over ASGI)."""
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"it-{uid('gw')[-8:]}", request_timeout_s=30)
    gw = Gateway(settings)
    await gw.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.api),
                                     base_url="http://gw", timeout=60) as client:
            yield client
    finally:
        await gw.stop()


def _headers(auth: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth}", "Idempotency-Key": uid("idem-key-0000")}


def _gate(model: type, child: str, at: datetime) -> Any:
    return model(contract=child, school_id=SCHOOL, gate_id="izh-42-gate-1", tap_id=uid("tap"),
                 at=at, local_date=at.astimezone(ZoneInfo(TZ)).date().isoformat())


async def _ask(stack: dict[str, Any], message: Any, key: str, auth: str) -> dict[str, Any]:
    reply: dict[str, Any] = (await stack["req"].send(message, key, token=auth)).json()
    return reply


async def test_the_journal_answers_only_the_kind_and_window_asked_for(stack):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    now = datetime.now(UTC)
    await stack["pub"].publish(_gate(StudentEntered, child, now - timedelta(minutes=2)), child)
    await stack["pub"].publish(_gate(StudentLeft, child, now - timedelta(minutes=1)), child)
    auth = token(stack, acc)

    async def both() -> list[dict[str, Any]] | None:
        lines = (await _ask(stack, GetJournal(account_id=acc), acc, auth))["lines"]
        return lines if len(lines) == 2 else None

    everything = await eventually(both, what="both gate passages in the journal")
    assert {ln["kind"] for ln in everything} == {"arrived_safely", "child_left"}
    left = await _ask(stack, GetJournal(account_id=acc, kinds=["child_left"], channel="push",
                                        contract=child), acc, auth)
    assert [ln["kind"] for ln in left["lines"]] == ["child_left"]
    later = await _ask(stack, GetJournal(account_id=acc, since=now), acc, auth)
    assert later["ok"] is True and later["lines"] == []
    refused = await _ask(stack, GetJournal(account_id=acc, kinds=["weather"]), acc, auth)
    assert refused["ok"] is False and refused["error"]["code"] == "invalid_filter"


async def test_preferences_and_service_switches_are_read_back(stack):
    acc, _ = await make_guardian(stack, contract(), push=True, sms=True)
    auth = token(stack, acc)
    set_reply = await _ask(stack, SetPreferences(request_id=uid("pref"), account_id=acc,
                                                 quiet_from="22:30", quiet_to="07:15",
                                                 sms_informer=False), acc, auth)
    assert set_reply["ok"] is True
    reply = await _ask(stack, GetPreferences(account_id=acc), acc, auth)
    assert reply["ok"] is True
    assert (reply["quiet_from"], reply["quiet_to"], reply["time_zone"]) == (
        "22:30", "07:15", TZ)
    assert reply["sms_informer"] is False and reply["push"] is True
    assert reply["channels"]["child_left"] == ["push"]  # SMS chosen, the informer is off
    assert "sms" in reply["channels"]["new_login"]  # security alerts are always on


async def test_a_device_is_listed_by_fingerprint_and_removed(stack):
    acc, _ = await make_guardian(stack, contract(), push=True)
    auth = token(stack, acc)
    listed = await _ask(stack, ListPushTokens(account_id=acc), acc, auth)
    [device] = listed["tokens"]
    assert device["platform"] == "android" and len(device["fingerprint"]) == 9
    assert "fcm-" not in str(listed)  # the token itself never leaves notify
    removed = await _ask(stack, RemovePushToken(request_id=uid("rm"), account_id=acc,
                                                token_id=device["token_id"]), acc, auth)
    assert removed["ok"] is True
    assert (await _ask(stack, ListPushTokens(account_id=acc), acc, auth))["tokens"] == []
    db = stack["svc"].runtime.db

    async def push_off() -> bool:
        doc = await db.notify_guardians.find_one({"_id": acc})
        return bool(doc and doc["has_push_token"] is False)

    await eventually(push_off, what="the guardian without a device")
    again = await _ask(stack, RemovePushToken(request_id=uid("rm"), account_id=acc,
                                              token_id=device["token_id"]), acc, auth)
    assert again["ok"] is False and again["error"]["code"] == "unknown_push_token"


async def test_support_answers_a_request_and_the_parent_is_told_by_push(stack):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    parent = issue_access_token(stack["key"], account_id=acc, session_id=uid("ses"),
                                role=Role.PARENT,
                                children=[ChildGrant(contract=child, role="primary")])
    opened = await _ask(stack, OpenSupportRequest(
        request_id=uid("sup"), account_id=acc, topic="top_up",
        text="Пополнение через терминал не дошло", contract=child, school_id=SCHOOL),
        acc, parent)
    ticket = opened["request"]["ticket_id"]
    assert opened["request"]["status"] == "open"
    support = issue_access_token(stack["key"], account_id="acc_support0001",
                                 session_id=uid("ses"), role=Role.SUPPORT)
    queue = await _ask(stack, GetSupportRequests(status="open", limit=200), ticket, support)
    assert ticket in [r["ticket_id"] for r in queue["requests"]]
    answered = await _ask(stack, AnswerSupportRequest(
        request_id=uid("ans"), ticket_id=ticket, text="Платёж зачислен"), ticket, support)
    assert answered["request"]["status"] == "answered"
    [push] = await eventually(lambda: as_awaitable(
        [p for p in http_to(stack, "/push", account_id=acc)
         if p["body"]["kind"] == "support_answered"]), what="the answer's push")
    assert "Платёж зачислен" not in str(push["body"])  # the answer is read in the app
    thread = await _ask(stack, GetSupportRequest(ticket_id=ticket), ticket, parent)
    assert [(m["author"], m["text"]) for m in thread["thread"]] == [
        ("parent", "Пополнение через терминал не дошло"), ("support", "Платёж зачислен")]
    later = await _ask(stack, OpenSupportRequest(request_id=uid("sup"), account_id=acc,
                                                 topic="card", text="Второй вопрос"),
                       acc, parent)
    mine = await _ask(stack, GetSupportRequests(account_id=acc), acc, parent)
    assert [(r["ticket_id"], r["status"]) for r in mine["requests"]] == [
        (later["request"]["ticket_id"], "open"), (ticket, "answered")]  # newest change first
    stranger = token(stack, "acc_stranger0001")
    hidden = await _ask(stack, GetSupportRequest(ticket_id=ticket), ticket, stranger)
    assert hidden["ok"] is False and hidden["error"]["code"] == "unknown_support_request"


async def test_the_cabinet_calls_reach_notify_through_the_gateway(stack, http):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    parent = issue_access_token(stack["key"], account_id=acc, session_id=uid("ses"),
                                role=Role.PARENT,
                                children=[ChildGrant(contract=child, role="primary")])
    assert (await http.get("/v1/faq")).status_code == 200
    await stack["pub"].publish(_gate(StudentLeft, child, datetime.now(UTC)), child)

    async def left_line() -> list[dict[str, Any]] | None:
        answer = await http.get("/v1/notifications", headers=_headers(parent),
                                params={"kind": ["child_left"], "contract": child})
        assert answer.status_code == 200, answer.text
        return answer.json()["lines"] or None

    [line] = await eventually(left_line, what="the exit in the filtered journal")
    assert line["kind"] == "child_left"
    bad = await http.get("/v1/notifications", headers=_headers(parent),
                         params={"status": "lost"})
    assert bad.status_code == 422
    prefs = await http.get("/v1/notifications/preferences", headers=_headers(parent))
    assert prefs.status_code == 200 and prefs.json()["push"] is True
    [device] = (await http.get("/v1/push-tokens", headers=_headers(parent))).json()["tokens"]
    gone = await http.delete(f"/v1/push-tokens/{device['token_id']}", headers=_headers(parent))
    assert gone.status_code == 200, gone.text
    again = await http.delete(f"/v1/push-tokens/{device['token_id']}",
                              headers=_headers(parent))
    assert again.status_code == 404 and again.json()["code"] == "unknown_push_token"
    opened = await http.post("/v1/support/requests", headers=_headers(parent), json={
        "topic": "card", "text": "Карта не проходит турникет", "contract": child,
        "school_id": SCHOOL})
    assert opened.status_code == 201, opened.text
    ticket = opened.json()["request"]["ticket_id"]
    admin = issue_access_token(stack["key"], account_id="acc_schooladmin01",
                               session_id=uid("ses"), role=Role.SCHOOL_ADMIN,
                               school_id=SCHOOL)
    answered = await http.post(f"/v1/support/requests/{ticket}/answers",
                               headers=_headers(admin),
                               json={"text": "Карта перевыпущена", "close": True})
    assert answered.status_code == 200, answered.text
    seen = await http.get(f"/v1/support/requests/{ticket}", headers=_headers(parent))
    assert seen.json()["request"]["status"] == "closed"
    assert [m["author"] for m in seen.json()["thread"]] == ["parent", "school_admin"]
    mine = await http.get("/v1/support/requests", headers=_headers(parent))
    assert [r["ticket_id"] for r in mine.json()["requests"]] == [ticket]
