"""notify end to end in-process, against the real broker, the real MongoDB-protocol server and
the local SMTP and HTTP sinks (deploy/local/sinks.py): guardians are built from auth's events,
child events become push / SMS / e-mail by preference, delivery is retried and never doubled,
quiet hours hold routine news but not codes, and the journal shows each message's status."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.access import StudentEntered, StudentLeft
from contracts.integrations import SaleItem
from contracts.notify import GetJournal, OneTimeCodeRequested
from contracts.wallet import Balances, ReceiptIssued, SalePosted, TopUpApplied
from deploy.local.sinks import read_mail
from tests.integration.notify_support import (
    TZ,
    account,
    as_awaitable,
    contract,
    http_to,
    make_guardian,
    notify_stack,
    token,
)
from tests.support import eventually, uid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stack(service_runner, bootstrap, infra, tmp_path_factory) -> Any:
    async with notify_stack(service_runner, bootstrap, infra,
                            tmp_path_factory.mktemp("notify-sinks")) as running:
        yield running


def entered(child: str, at: datetime | None = None) -> StudentEntered:
    at = at or datetime.now(UTC)
    return StudentEntered(contract=child, school_id="izh-school-42", gate_id="izh-42-gate-1",
                          tap_id=uid("tap"), at=at, local_date=at.astimezone(ZoneInfo(TZ))
                          .date().isoformat())


async def test_a_guardian_with_the_app_gets_a_push_and_one_without_it_an_sms_if_allowed(stack):
    child = contract()
    with_app, _ = await make_guardian(stack, child, push=True)
    sms_only, sms_phone = await make_guardian(stack, child, push=False, sms=True)
    _no_sms, no_sms_phone = await make_guardian(stack, child, push=False, sms=False)
    await stack["pub"].publish(entered(child), child)
    pushes = await eventually(lambda: as_awaitable(http_to(stack, "/push", account_id=with_app)),
                              what="push to the guardian with the app")
    texts = await eventually(lambda: as_awaitable(http_to(stack, "/sms", to=sms_phone)),
                             what="SMS fallback to the guardian without the app")
    assert len(pushes) == 1 and len(texts) == 1
    assert pushes[0]["body"]["kind"] == "arrived_safely"  # the day's first entry
    assert pushes[0]["body"]["tokens"], "the push carries the registered device token"
    assert "благополучно в школе" in texts[0]["body"]["text"]
    # SMS costs money: a guardian who did not allow it gets nothing on the phone.
    assert http_to(stack, "/sms", to=no_sms_phone, status=None) == []
    await stack["deliveries"].wait_for(
        lambda r: r.key == sms_only and r.json()["status"] == "sent"
        and r.json()["channel"] == "sms")


async def test_a_purchase_push_lists_the_items_and_the_remaining_balance(stack):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    sale = SalePosted(
        contract=child, sale_id=uid("sale"), terminal_id="izh-42-till-1",
        items=[SaleItem(sku="soup-1", name="Суп куриный", category="soup", qty=1,
                        unit_price=65_00),
               SaleItem(sku="bun-1", name="Булочка", category="bakery", qty=2, unit_price=25_50)],
        total=116_00, paid_money=116_00, paid_bonus=0, bonus_accrued=116,
        balances=Balances(general=1_000_00, canteen=234_50, transit=0, bonus_points=116),
        sold_at=datetime.now(UTC))
    await stack["pub"].publish(sale, child)
    [push] = await eventually(lambda: as_awaitable(http_to(stack, "/push", account_id=acc)),
                              what="purchase push")
    body = push["body"]["body"]
    assert "Суп куриный" in body and "Булочка, 2 шт." in body
    assert "1\u00a0234,50\u00a0₽" in body  # canteen + general after the sale


async def test_an_email_receipt_reaches_the_smtp_sink_once_with_the_top_up(stack):
    child = contract()
    email = f"{uid('parent')}@example.ru"
    acc, _ = await make_guardian(stack, child, push=True, email=email)
    payment, now = uid("pay"), datetime.now(UTC)
    await stack["pub"].publish(ReceiptIssued(contract=child, payment_id=payment, amount=500_00,
                                             email=email, issued_at=now), child)
    await stack["pub"].publish(TopUpApplied(
        contract=child, payment_id=payment, amount=500_00, sub_balance="canteen",
        channel="bank_card", balances=Balances(general=0, canteen=700_00, transit=0,
                                               bonus_points=0), applied_at=now), child)
    await eventually(lambda: as_awaitable(http_to(stack, "/push", account_id=acc)),
                     what="top-up push")

    def mails() -> list[dict[str, Any]]:
        return [m for m in read_mail(stack["sinks"].directory) if email in m["rcpt_tos"]]

    [mail] = await eventually(lambda: as_awaitable(mails()), what="receipt e-mail")
    assert mail["kind"] == "receipt" and "500,00\u00a0₽" in mail["subject"]
    assert payment in mail["text"]
    # The receipt and the top-up's e-mail companion are one message for this guardian.
    await stack["deliveries"].wait_for(lambda r: r.key == acc and r.json()["channel"] == "email"
                                       and r.json()["status"] == "sent")
    assert len(mails()) == 1


async def test_one_event_three_times_with_a_sink_failing_twice_gives_one_message_each(stack):
    child = contract()
    acc_a, _ = await make_guardian(stack, child, push=True)
    acc_b, _ = await make_guardian(stack, child, push=True)
    sinks = stack["sinks"]
    sinks.http.fail_first = sinks.http.count + 2  # the next two provider calls fail
    now = datetime.now(UTC)
    left = StudentLeft(contract=child, school_id="izh-school-42", gate_id="izh-42-gate-1",
                       tap_id=uid("tap"), at=now,
                       local_date=now.astimezone(ZoneInfo(TZ)).date().isoformat())
    envelope = await stack["pub"].publish(left, child)
    await stack["pub"].publish(left, child, envelope=envelope)  # redelivery of the same record
    await stack["pub"].publish(left, child)  # the same fact under a new message id

    for acc in (acc_a, acc_b):
        await stack["deliveries"].wait_for(
            lambda r, acc=acc: r.key == acc and r.json()["status"] == "sent", timeout=30)
    # A later event for the child, handled after the copies (same partition): the copies are
    # all processed by the time it is delivered.
    await stack["pub"].publish(entered(child), child)
    await eventually(lambda: as_awaitable(len(http_to(stack, "/push", account_id=acc_a)) == 2),
                     what="the later push")
    attempts = {acc: http_to(stack, "/push", account_id=acc, status=None) for acc in
                (acc_a, acc_b)}
    for acc, calls in attempts.items():
        left_calls = [c for c in calls if c["body"]["kind"] == "child_left"]
        assert [c["status"] for c in left_calls].count(200) == 1, acc
        assert len({c["idempotency_key"] for c in left_calls}) == 1
    failed = sum(c["status"] == 503 for calls in attempts.values() for c in calls)
    assert failed == 2
    statuses = [r.json()["status"] for r in stack["deliveries"].records
                if r.key in (acc_a, acc_b) and r.json()["kind"] == "child_left"]
    assert sorted(statuses).count("sent") == 2 and statuses.count("failed") == 2


async def test_quiet_hours_hold_an_exit_notice_but_not_a_one_time_code(stack):
    child = contract()
    local_now = stack["clock"]().astimezone(ZoneInfo(TZ))
    quiet = ((local_now - timedelta(hours=1)).strftime("%H:%M"),
             (local_now + timedelta(hours=1)).strftime("%H:%M"))
    acc, tel = await make_guardian(stack, child, push=True, quiet=quiet)
    now = stack["clock"]()
    left = StudentLeft(contract=child, school_id="izh-school-42", gate_id="izh-42-gate-1",
                       tap_id=uid("tap"), at=now,
                       local_date=now.astimezone(ZoneInfo(TZ)).date().isoformat())
    await stack["pub"].publish(left, child)
    await stack["deliveries"].wait_for(lambda r: r.key == acc
                                       and r.json()["status"] == "deferred")
    code = f"{random.randrange(10**5, 10**6)}"
    request_id = uid("otp")
    await stack["pub"].publish(OneTimeCodeRequested(
        request_id=request_id, phone=tel, code=code, purpose="login",
        expires_at=now + timedelta(minutes=5)), tel)
    [sms] = await eventually(lambda: as_awaitable(http_to(stack, "/sms", to=tel)), what="code SMS")
    assert code in sms["body"]["text"]
    assert http_to(stack, "/push", account_id=acc, status=None) == []  # still held

    # The code is nowhere but in the SMS: not on the delivery topic, not in the journal store.
    await stack["deliveries"].wait_for(lambda r: r.json()["kind"] == "one_time_code"
                                       and r.json()["status"] == "sent"
                                       and r.key == request_id)
    assert all(code not in r.value.decode() for r in stack["deliveries"].records)
    stored = await stack["svc"].runtime.db.notify_messages.find_one(
        {"_id": f"{request_id}:phone:sms"})
    assert stored["status"] == "sent" and code not in str(stored)

    stack["clock"].advance(hours=1, minutes=5)  # quiet hours are over
    try:
        [push] = await eventually(lambda: as_awaitable(http_to(stack, "/push", account_id=acc)),
                                  what="the held exit notice after quiet hours")
    finally:
        stack["clock"].offset = timedelta()  # tokens are checked against the service clock
    assert push["body"]["kind"] == "child_left"


async def test_the_journal_shows_each_message_with_its_status_to_its_guardian_only(stack):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    await stack["pub"].publish(entered(child), child)
    await stack["deliveries"].wait_for(lambda r: r.key == acc and r.json()["status"] == "sent")
    reply = await stack["req"].send(GetJournal(account_id=acc, limit=10), acc,
                                    token=token(stack, acc))
    lines = reply.json()["lines"]
    assert [(ln["kind"], ln["channel"], ln["status"]) for ln in lines] == [
        ("arrived_safely", "push", "sent")]
    assert lines[0]["text"].startswith("Прибытие в школу")
    stranger = account()
    denied = await stack["req"].send(GetJournal(account_id=acc), acc,
                                     token=token(stack, stranger))
    assert denied.json()["ok"] is False and denied.json()["error"]["code"] == "forbidden"



async def test_the_journal_pages_from_the_most_recent_line_with_a_cursor(stack):
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    now = datetime.now(UTC)
    for days in range(5):
        await stack["pub"].publish(entered(child, now - timedelta(days=days, minutes=1)), child)
    auth = token(stack, acc)

    async def whole() -> list[dict[str, Any]] | None:
        reply = await stack["req"].send(GetJournal(account_id=acc, limit=500), acc, token=auth)
        lines = reply.json()["lines"]
        return lines if len(lines) == 5 else None

    lines = await eventually(whole, what="a journal line for each of the five arrivals")
    pages, cursor = [], None
    while True:
        reply = (await stack["req"].send(GetJournal(account_id=acc, limit=2, cursor=cursor),
                                         acc, token=auth)).json()
        pages.append(reply["lines"])
        if (cursor := reply["next_cursor"]) is None:
            break
    joined = [line for p in pages for line in p]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [ln["at"] for ln in joined] == sorted((ln["at"] for ln in joined), reverse=True)
    def seen(found: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(ln["at"], ln["kind"], ln["text"]) for ln in found]  # status moves on
    assert seen(joined) == seen(lines)
