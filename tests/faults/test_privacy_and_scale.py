"""Two scenarios on the city's load: the privacy scan (parents register, confirm their SMS
code, log in and query their balances while auth is killed once; then every log line and every
topic record of the run is searched for their passwords, codes and tokens, and for anything
shaped like a bank card number), and the rebalance storm (wallet, then access, scaled from one
process to three and back, repeatedly, under load)."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import signal
import time
from collections import defaultdict
from typing import Any

import pytest

from contracts import auth as cmd
from contracts.catalog import TOPICS
from deploy.local import stack as devstack
from tests.faults.conftest import Report, World, scale
from tests.faults.load import City, Watch, assert_clean
from tests.faults.test_kill import fast_takeover, publish_paced, start_all
from tests.support import Requester, TopicReader, all_records, eventually, uid

pytestmark = [pytest.mark.system, pytest.mark.slow]

PAN = re.compile(r"(?<!\d)\d{16}(?!\d)")
COMMAND_TOPICS = {t.name for t in TOPICS if t.name.endswith(".commands.v1")}


def luhn(number: str) -> bool:
    digits = [int(d) for d in reversed(number)]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
               for i, d in enumerate(digits)) % 10 == 0


def leaks(text: str, secrets: set[str]) -> set[str]:
    return {s for s in secrets if re.search(rf"(?<![0-9A-Za-z._-]){re.escape(s)}"
                                            rf"(?![0-9A-Za-z])", text)}


async def register(req: Requester, otp: TopicReader, card_contract: str,
                   birth_date: str) -> tuple[str, str, set[str]]:
    phone = f"+7912{random.randrange(10**6, 10**7)}"
    password = f"heron {uid('pw')} wades"
    started = await req.send(cmd.StartRegistration(
        request_id=uid("r"), phone=phone, contract=card_contract, password=password,
        consent=True), phone, timeout=120)
    assert started.json()["ok"], started.json()
    [sms] = (await otp.wait_for(lambda r: r.key == phone, timeout=120))[:1]
    code = str(sms.json()["code"])
    confirmed = await req.send(cmd.ConfirmRegistration(request_id=uid("c"), phone=phone,
                                                       code=code), phone, timeout=120)
    assert confirmed.json()["ok"], confirmed.json()
    tokens = (await req.send(cmd.Login(request_id=uid("l"), login=phone, password=password),
                             phone, timeout=120)).json()
    assert tokens["ok"], tokens
    linked = (await req.send(cmd.LinkChild(request_id=uid("k"), contract=card_contract,
                                           birth_date=birth_date), phone,
                             token=tokens["access_token"], timeout=120)).json()
    assert linked["ok"], linked
    issued = {tokens.get("access_token"), tokens.get("refresh_token"),
              linked.get("access_token"), linked.get("refresh_token")}
    return password, code, {t for t in issued if t}


@pytest.mark.parametrize("events", [1_000])
async def test_no_password_code_token_or_card_number_outside_where_the_catalog_sends_it(
        events: int, world: World, fault_report: Report) -> None:
    w = world
    w.start_sinks()
    procs = await start_all(w, fast_takeover(), "0")
    city = City.build(random.Random(events), scale(events),
                      private_key=w.env["AUTH_PRIVATE_KEY"])
    await city.seed(w)
    passwords: set[str] = set()
    codes: set[str] = set()
    tokens: set[str] = set()
    async with Watch(city, w) as watch, Requester(w.bootstrap) as req, \
            TopicReader(w.bootstrap, "notify.otp-requests.v1") as otp:
        publisher = asyncio.create_task(publish_paced(city, w, 60.0))
        for n, card in enumerate(city.cards[:6]):
            if n == 3:  # auth dies by kill -9 between two parents
                await asyncio.to_thread(procs["auth"].stop, 5.0, signal.SIGKILL)
                procs["auth"] = w.start("auth", "k1", wait=False,
                                        env=fast_takeover()["auth"])
            password, code, issued = await register(req, otp, card.contract,
                                                    card.birth_date.isoformat())
            passwords.add(password)
            codes.add(code)
            tokens |= issued
        for event in city.events:
            if "authorization" in event.headers:
                tokens.add(event.headers["authorization"].removeprefix("Bearer "))
        await publisher
        await eventually(watch.complete, timeout=300, interval=1, what="the load decided")
        result: dict[str, Any] = await watch.result()
    records = await all_records(w.bootstrap)
    found: dict[str, set[str]] = {}
    for log in sorted((w.run_dir / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        hits = leaks(text, passwords | codes | tokens)
        hits |= {m for m in PAN.findall(text) if luhn(m)}
        if hits:
            found[f"log {log.name}"] = hits
    for topic, text in records.items():
        secret = passwords | codes | tokens
        if topic == "auth.commands.v1":  # what the apps sent: passwords, codes, tokens
            secret = set()
        elif topic == "notify.otp-requests.v1":  # the one topic meant for codes
            secret = passwords | tokens
        elif topic in COMMAND_TOPICS or topic == "apps.replies.v1":
            secret = passwords | codes  # bearer tokens of commands; session tokens replied
        hits = leaks(text, secret) | {m for m in PAN.findall(text) if luhn(m)}
        if hits:
            found[f"topic {topic}"] = hits
    # the scan sees each secret where it is meant to be, so it would see it elsewhere
    assert leaks(records["auth.commands.v1"], passwords) == passwords
    assert leaks(records["notify.otp-requests.v1"], codes) == codes
    fault_report("privacy scan of every log and topic", **result,
                 passwords=len(passwords), codes=len(codes), tokens=len(tokens),
                 logs_scanned=len(list((w.run_dir / "logs").glob("*.log"))),
                 topics_scanned=len(records), leaks=sum(len(v) for v in found.values()),
                 leaked_where=sorted(found))
    assert_clean(result)
    assert found == {}


def sales_out_of_order(w: World, city: City) -> int:
    """Sales applied to an account in another order than their card sent them (one card's
    sales travel on one partition, in order)."""
    sent = {sale_id: i for i, sale_id in enumerate(city.sales)}
    wrong = 0
    by_contract: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in w.database("wallet").wallet_operations.find(
            {"contract": {"$in": [c.contract for c in city.cards]}, "kind": "sales"}):
        if row["key"] in sent:
            by_contract[row["contract"]].append((row["record"]["seq"], row["key"]))
    for sales in by_contract.values():
        applied = [sale_id for _, sale_id in sorted(sales)]
        wrong += sum(1 for a, b in itertools.pairwise(applied) if sent[a] > sent[b])
    return wrong


@pytest.mark.parametrize("events, cycles", [
    (1_000, 1), pytest.param(6_000, 4, marks=pytest.mark.timeout(3_600))])
async def test_a_rebalance_storm_of_wallet_then_access_loses_doubles_and_reorders_nothing(
        events: int, cycles: int, world: World, fault_report: Report) -> None:
    w = world
    w.start_sinks()
    env = fast_takeover()
    procs = await start_all(w, env, "0")
    city = City.build(random.Random(events + cycles), scale(events) if cycles > 1 else events,
                      private_key=w.env["AUTH_PRIVATE_KEY"])
    await city.seed(w)
    rebalances = 0
    async with Watch(city, w) as watch:
        publisher = asyncio.create_task(publish_paced(city, w, 40.0))
        for service in ("wallet", "access"):
            for n in range(cycles):
                extra = [w.start(service, f"storm-{n}-{i}", wait=False, env=env[service])
                         for i in (1, 2)]
                for proc in extra:
                    await asyncio.to_thread(devstack.wait_ready, proc, 120)
                await asyncio.sleep(8)  # three members share the partitions for a while
                await asyncio.gather(*(asyncio.to_thread(p.stop, 60.0, signal.SIGTERM)
                                       for p in extra))
                rebalances += 2
                await asyncio.sleep(2)
        await publisher
        started = time.monotonic()
        await eventually(watch.complete, timeout=300 + len(city.events) / 20, interval=1,
                         what="every event's outcome after the storm")
        drain_s = round(time.monotonic() - started, 1)
        result: dict[str, Any] = await watch.result()
    out_of_order = await asyncio.to_thread(sales_out_of_order, w, city)
    fault_report(f"rebalance storm 1-3-1 x{cycles} (wallet, access)", **result,
                 rebalances=rebalances, per_card_order_violations=out_of_order,
                 drain_s=drain_s, services_alive=sum(p.alive() for p in procs.values()))
    assert_clean(result)
    assert out_of_order == 0
