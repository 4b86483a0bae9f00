"""A small school day across the whole system: broker, database, mail and SMS/push sinks and the
five services, each its own process (``deploy.local.stack``), played by the same scenario as
``make run`` (``deploy.local.schoolday``) for 2 schools and 14 students, quiet hours lifted.

The outcomes are checked against what the integrators did (what the scenario paid and sold) and
what the outside world received (the sinks), not against the services' own bookkeeping:

- every balance equals the top-ups paid minus the approved sales and the fares ridden;
- every entry gave each guardian exactly one message, on their channel (push with the app,
  SMS without); no message reached a provider twice;
- the parent's sweets ban and daily limit declined two sales, and the parent was told each time;
- the SMTP server received one receipt per top-up with an e-mail;
- the report ``make run`` prints is produced (``SchoolDay.report``) and names the children
  whose guardians were alerted that they rode but did not arrive.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from contracts import notify, wallet
from deploy.local import stack as devstack
from deploy.local.schoolday import SERVICE_ENV, SchoolDay, generate_city
from deploy.local.sinks import read_http, read_mail

pytestmark = pytest.mark.system


def _type(headers: dict[str, str]) -> str:
    return headers.get("ce_type", "").rsplit(".", 1)[-1]


async def test_a_school_day_adds_up_and_tells_every_parent_once(run_dir: Path) -> None:
    rng = random.Random(7)
    stack = devstack.Stack(run_dir / "schoolday")
    await asyncio.to_thread(stack.up, service_env=SERVICE_ENV)
    try:
        city = generate_city(rng, schools=2, students=14)
        day = SchoolDay(stack, city, rng, quiet_hours=False)
        await day.bus.start()
        try:
            for _title, _steps, phase in day.phases():
                await phase(lambda: None)
                await day.bus.producer.flush()
            assert await day.settle(timeout=240), f"still behind: {day.lagging}"
            assert all(g.account_id for g in city.guardians), "every parent logged in"
            balances = {s.contract: await day.bus.request(
                wallet.GetBalance(contract=s.contract), s.contract, token=day.support_token)
                for s in city.students}
            decisions = [v for _, v in await day.bus.read_all("wallet.sale-decisions.v1")]
            wallet_events = await day.bus.read_all("wallet.events.v1")
            rides = [v for h, v in await day.bus.read_all("transit.events.v1")
                     if _type(h) == "RideRecorded"]
            deliveries = [v for _, v in await day.bus.read_all("notify.deliveries.v1")]
            journeys = {g.children[0].contract: await day.bus.request(notify.GetJourney(
                contract=g.children[0].contract, date=city.day.isoformat()),
                g.children[0].contract, token=g.token) for g in city.guardians}
            summary = await day.report()  # the report `make run` prints, from the same data
        finally:
            await day.bus.stop()
        sinks = stack.run_dir / "sinks"
        http, mail = read_http(sinks), read_mail(sinks)
    finally:
        await asyncio.to_thread(stack.down)

    assert summary.dead_letters == dict.fromkeys(devstack.SERVICES, 0)
    assert sum(summary.sent.values()) == sum(d["status"] == "sent" for d in deliveries)

    # --- money: balance = paid - sold - ridden, for every child -------------------------------
    assert not [e for h, e in wallet_events if _type(h) == "FareDeclined"]
    spent: Counter[str] = Counter()
    for decision in decisions:
        contract, total = day.sales[decision["sale_id"]]
        if decision["approved"]:
            assert decision["paid_money"] + decision["paid_bonus"] == total
            spent[contract] += decision["paid_money"]
    for ride in rides:
        spent[ride["contract"]] += ride["fare"]
    assert len(decisions) == len(day.sales)
    ridden = Counter(r["contract"] for r in rides)
    assert all(ridden[s.contract] == 2 for s in city.students if s.rides and not s.away)
    for s in city.students:
        b = balances[s.contract]["balances"]
        money = b["general"] + b["canteen"] + b["transit"]
        assert money == day.paid[s.contract] - spent[s.contract], s.contract
    assert day.auto_child is not None and day.paid[day.auto_child.contract] > 0

    # --- the outside world got every message once ---------------------------------------------
    delivered = [r for r in http if r["status"] == 200]
    per_key = Counter(r["idempotency_key"] for r in delivered)
    assert per_key and max(per_key.values()) == 1, per_key.most_common(3)
    mail_ids = Counter(m["message_id"] for m in mail)
    assert max(mail_ids.values()) == 1

    # --- every entry: exactly one message per guardian, on the guardian's channel -------------
    for g in city.guardians:
        s = g.children[0]
        kind = r"access:manual:.+" if s.forgot_card else \
            rf"journey:{s.contract}:\d{{4}}-\d\d-\d\d:arrived_safely"
        pattern = re.compile(rf"^{kind}:{g.account_id}:(push|sms)$")
        got = [r for r in delivered if pattern.match(r["idempotency_key"] or "")]
        entered = not s.away
        assert len(got) == (1 if entered else 0), (s, got)
        if entered:
            assert got[0]["path"] == ("/push" if g.push else "/sms")

    # --- rode toward school but did not enter: one alert per guardian, nobody else alerted ---
    alerted = {s.contract for s in city.students if s.away and ridden[s.contract]}
    assert any(s.truant for s in city.students if s.contract in alerted)
    for g in city.guardians:
        s = g.children[0]
        pattern = re.compile(rf"^journey:{s.contract}:[-\d]+:not_arrived:{g.account_id}:")
        got = [r for r in delivered if pattern.match(r["idempotency_key"] or "")]
        assert len(got) == (1 if s.contract in alerted else 0), (s, got)
        assert (journeys[s.contract]["not_arrived_alert_at"] is not None) == (
            s.contract in alerted)
    # ... and the report names exactly those children, with the reason the day kept them away
    assert summary.alerted == {s.contract: "skipped school" if s.truant else
                               "card blocked at the gate" for s in city.students
                               if s.contract in alerted}

    # --- the journey query joins rides, gates and purchases into one timeline -------------
    rider = day.featured.children[0]
    steps = journeys[rider.contract]["steps"]
    kinds = [step["kind"] for step in steps]
    assert kinds[:2] == ["ride", "entry"] and kinds[-2:] == ["exit", "ride"], kinds
    assert "purchase" in kinds and journeys[rider.contract]["arrived_at"] == steps[1]["at"]
    assert [step["at"] for step in steps] == sorted(step["at"] for step in steps)

    # --- declines: the parent's sweets ban and daily limit, and the parent was told -----------
    featured = day.featured.children[0]
    reasons = Counter(d["reason"] for d in decisions
                      if not d["approved"] and day.sales[d["sale_id"]][0] == featured.contract)
    assert reasons == {wallet.DeclineReason.BLOCKED_CATEGORY: 1,
                       wallet.DeclineReason.DAILY_LIMIT: 1}
    told = {d["notification_id"] for d in deliveries
            if d["account_id"] == day.featured.account_id and d["kind"] == "payment_declined"
            and d["status"] == "sent" and d["channel"] != "in_app"}  # the cabinet copy aside
    assert len(told) == 2

    # --- one e-mailed receipt per top-up with an address --------------------------------------
    receipts = Counter(to for m in mail if m["kind"] == "receipt" for to in m["rcpt_tos"])
    assert receipts == day.receipts

