"""`make run`: one school day for a generated city, played against the embedded stack.

Starts the broker, the database, the mail and SMS/push sinks and the five services as their
own processes; then acts as every integrator and app: issues cards, sets school schedules,
registers and logs in parents (reading their SMS codes from the SMS sink), tops up, plays the
morning rides and gate entries (some late, a forgotten card, a blocked card), lunch sales with
items (a blocked category, a daily limit), afternoon exits and rides home, and an auto top-up.
It prints a report and stops everything, also when interrupted (Ctrl-C exits 130, SIGTERM
143). Options: ``--schools``, ``--students``, ``--seed``, ``--keep`` (leave the stack running).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from contracts import access, auth, integrations, notify, transit, wallet
from contracts.catalog import CLIENT_REPLIES_CONFIG, TOPICS
from contracts.envelope import ContractModel, Envelope, encode, headers_to_dict
from contracts.money import format_rub
from contracts.signing import Signers
from deploy.local import stack as devstack

console = Console()
TZ = "Europe/Samara"
FIRST_NAMES = ["Маша", "Саша", "Ваня", "Катя", "Дима", "Аня", "Петя", "Лиза", "Коля", "Оля",
               "Миша", "Настя", "Егор", "Соня", "Артём", "Вика"]
MENU = [
    ("soup-borsch", "Борщ", "soup", [], 45_00),
    ("hot-cutlet", "Котлета с пюре", "hot_meal", ["milk"], 85_00),
    ("salad-vinegret", "Винегрет", "salad", [], 30_00),
    ("bun-cinnamon", "Булочка с корицей", "bakery", ["gluten", "milk"], 25_00),
    ("choco-bar", "Шоколадный батончик", "sweets", ["milk", "nuts"], 60_00),
    ("compote", "Компот", "drink", [], 15_00),
    ("apple", "Яблоко", "fruit", [], 20_00),
]


@dataclass
class Student:
    contract: str
    card_uid: str
    school_id: str
    class_name: str
    name: str
    birth_date: date
    rides: bool
    late: bool = False
    absent: bool = False
    forgot_card: bool = False
    blocked: bool = False
    truant: bool = False  # rides toward school in the morning but never enters

    @property
    def away(self) -> bool:
        """Not in school today: absent, truant, or turned away at the gate (blocked card)."""
        return self.absent or self.truant or self.blocked


@dataclass
class Guardian:
    phone: str
    password: str
    children: list[Student]
    email: str
    push: bool
    token: str = ""
    account_id: str = ""


@dataclass
class City:
    schools: list[str]
    students: list[Student]
    guardians: list[Guardian]
    day: date


@dataclass
class Summary:
    """The report's figures: events and dead letters per service, till and gate outcomes,
    notifications per channel, and the children whose guardians got a "rode but did not
    arrive" alert (contract -> why the scenario kept them away)."""

    events: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    mails: int = 0
    alert_messages: int = 0
    alerted: dict[str, str] = field(default_factory=dict)
    refusals: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class Tally:
    published: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


def school_day(now: datetime) -> date:
    """The most recent weekday before today in the school's time zone: its taps are in the
    past (services refuse future taps) and within the week (and older than a week is refused)."""
    d = now.astimezone(ZoneInfo(TZ)).date() - timedelta(days=1)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def local(day: date, hh: int, mm: int = 0) -> datetime:
    """``hh:00`` school-local plus ``mm`` minutes (may run past the hour), in UTC."""
    start = datetime(day.year, day.month, day.day, hh, tzinfo=ZoneInfo(TZ))
    return (start + timedelta(minutes=mm)).astimezone(UTC)


def generate_city(rng: random.Random, schools: int, students: int) -> City:
    school_ids = [f"izh-school-{n}" for n in rng.sample(range(10, 99), schools)]
    kids: list[Student] = []
    contracts = rng.sample(range(10_000_000, 99_999_999), students)
    for i, contract in enumerate(contracts):
        kids.append(Student(
            # The first hex digit is a letter: a UID is never all digits, never PAN-shaped.
            contract=str(contract), card_uid=f"{rng.getrandbits(56) | 0xA << 52:014X}",
            school_id=school_ids[i % schools],
            class_name=f"{rng.randint(1, 11)}{rng.choice('АБВ')}",
            name=rng.choice(FIRST_NAMES),
            birth_date=date(2010 + rng.randint(0, 9), rng.randint(1, 12), rng.randint(1, 28)),
            rides=rng.random() < 0.5))
    for s in rng.sample(kids, max(1, students // 12)):
        s.late = True
    for s in rng.sample([k for k in kids if not k.late], max(1, students // 25)):
        s.absent = True
    ordinary = [k for k in kids if not (k.late or k.absent)]
    ordinary[0].forgot_card = True
    ordinary[1].blocked = True
    ordinary[2].truant = ordinary[2].rides = True
    guardians: list[Guardian] = []
    for i, kid in enumerate(kids):
        phone = f"+7912{rng.randint(1_000_000, 9_999_999)}"
        guardians.append(Guardian(phone=phone, password=f"school-day-{uuid.uuid4().hex[:10]}",
                                  children=[kid], email=f"parent{i}@example.ru",
                                  push=rng.random() < 0.7))
    return City(school_ids, kids, guardians, school_day(datetime.now(UTC)))


CABINET_REPLIES = "apps.replies.schoolday-cabinet.v1"
"""The cabinet's own reply topic: logins are answered on the requester's topic only."""


class Bus:
    """Publishes like an integrator/app and reads topics back (plain aiokafka clients). Signs
    what the integrators must sign with their dev keys (``signers``)."""

    def __init__(self, bootstrap: str, signers: Signers) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.bootstrap = bootstrap
        self.signers = signers
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        self.consumer_cls = AIOKafkaConsumer
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.tally = Tally()

    async def start(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(CABINET_REPLIES, 1, 1,
                                                topic_configs=CLIENT_REPLIES_CONFIG)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        await self.producer.start()
        self._reply_task = asyncio.create_task(self._read_replies())

    async def stop(self) -> None:
        self._reply_task.cancel()
        await self.producer.stop()

    async def publish(self, message: ContractModel, key: str, *, source: str,
                      token: str | None = None, reply: bool = False) -> Envelope:
        from contracts.catalog import topic_for

        env = Envelope.new(message, source=source, subject=key,
                           reply_to=CABINET_REPLIES if reply else None)
        topic, value = topic_for(type(message)).name, encode(message)
        headers = env.to_headers()
        if token:
            headers["authorization"] = f"Bearer {token}"
        headers.update(self.signers.headers(topic, headers, value))
        await self.producer.send(topic, value, key=key.encode(),
                                 headers=[(k, v.encode()) for k, v in headers.items()])
        self.tally.published[source] += 1
        return env

    async def request(self, message: ContractModel, key: str, *, token: str | None = None,
                      timeout: float = 60) -> dict[str, Any]:
        env = await self.publish(message, key, source="app:cabinet", token=token, reply=True)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[env.correlation_id] = future
        await self.producer.flush()
        return await asyncio.wait_for(future, timeout)

    async def _read_replies(self) -> None:
        from aiokafka import TopicPartition

        consumer = self.consumer_cls(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                     fetch_max_wait_ms=devstack.DEV_FETCH_MAX_WAIT_MS)
        await consumer.start()
        try:
            parts = None
            while not parts:
                parts = consumer.partitions_for_topic(CABINET_REPLIES)
                if not parts:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(CABINET_REPLIES, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        corr = headers_to_dict(r.headers or []).get("ce_correlationid", "")
                        future = self.replies.pop(corr, None)
                        if future is not None and not future.done():
                            future.set_result(json.loads(r.value))
        finally:
            await consumer.stop()

    async def read_all(self, topic: str) -> list[tuple[dict[str, str], Any]]:
        """Every record of a topic so far (value decoded as JSON when it is JSON)."""
        from aiokafka import TopicPartition

        consumer = self.consumer_cls(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                     fetch_max_wait_ms=devstack.DEV_FETCH_MAX_WAIT_MS)
        await consumer.start()
        out: list[tuple[dict[str, str], Any]] = []
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            if not tps:
                return out
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            async def unread() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await unread():
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    for r in records:
                        try:
                            value: Any = json.loads(r.value) if r.value else None
                        except ValueError:
                            value = r.value
                        out.append((headers_to_dict(r.headers or []), value))
        finally:
            await consumer.stop()
        return out


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    console.print(f"[yellow]! {what}: not complete after {timeout:.0f} s[/yellow]")
    return False


SERVICE_ENV = {"access": {"ACCESS_SWEEP_INTERVAL_S": "3600"}}
"""See :meth:`SchoolDay.lessons_begin`."""

SMS_KINDS = ("arrived_safely", "manual_entry", "not_arrived_alert", "payment_declined",
             "card_blocked")
"""What a parent without the app asks to get by SMS (SMS costs money, so it is opt-in)."""


class SchoolDay:
    """The scenario. ``quiet_hours=False`` lifts every parent's quiet hours so that a run at
    night delivers everything at once (the system test); ``make run`` keeps the defaults."""

    def __init__(self, stack: devstack.Stack, city: City, rng: random.Random, *,
                 quiet_hours: bool = True) -> None:
        self.stack = stack
        self.city = city
        self.rng = rng
        self.quiet_hours = quiet_hours
        # What the integrators paid and sold, per contract: the books the wallet must match.
        self.paid: Counter[str] = Counter()
        self.sales: dict[str, tuple[str, int]] = {}
        self.receipts: Counter[str] = Counter()
        self.auto_child: Student | None = None
        self.bus = Bus(stack.env["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                       devstack.integrator_signers(stack.run_dir))
        self.out_dir = stack.run_dir / "schoolday"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.admin_tokens: dict[str, str] = {}
        self.refusals: Counter[tuple[str, str]] = Counter()
        self.support_token = ""
        self.featured = next(g for g in city.guardians if g.children[0].rides
                             and not g.children[0].away and not g.children[0].late
                             and not g.children[0].forgot_card)
        self.featured.push = True  # the parent whose day the report shows uses the app

    def check(self, reply: dict[str, Any], what: str) -> bool:
        """Count a refused request and show the first refusal of each kind."""
        if reply.get("ok", True):
            return True
        code = (reply.get("error") or {}).get("code", "?")
        self.refusals[(what, code)] += 1
        if self.refusals[(what, code)] == 1:
            console.print(f"[yellow]{what}: {code} — {(reply.get('error') or {}).get('message')}"
                          "[/yellow]")
        return False

    # --- phases ----------------------------------------------------------------------------

    async def issue_cards(self, step: Callable[[], None]) -> None:
        issued = local(self.city.day, 0, 0) - timedelta(days=30)
        for s in self.city.students:
            await self.bus.publish(integrations.CardIssued(
                contract=s.contract, card_uid=s.card_uid, school_id=s.school_id, school_tz=TZ,
                student_id=f"stu-{s.contract}", class_name=s.class_name,
                birth_date=s.birth_date, issued_at=issued), s.contract,
                source="integrator:card-issuer")
            step()

    async def set_schedules(self, step: Callable[[], None]) -> None:
        from services.runtime.tokens import issue_access_token

        private = self.stack.env.get("AUTH_PRIVATE_KEY") or (
            self.stack.run_dir / "auth_ed25519.pem").read_text()
        self.support_token = issue_access_token(private, account_id="acc_support0001",
                                                session_id="sd-support", role=auth.Role.SUPPORT,
                                                ttl_s=3600)
        hours = [access.DayHours(weekday=d, opens="07:00", closes="19:00", first_lesson="08:30")
                 for d in range(5)]
        for school in self.city.schools:
            token = issue_access_token(private, account_id="acc_admin00001",
                                       session_id=f"sd-{school}", role=auth.Role.SCHOOL_ADMIN,
                                       school_id=school, ttl_s=3600)
            self.admin_tokens[school] = token
            reply = await self.bus.request(access.SetSchoolSchedule(
                request_id=f"sched-{school}-{uuid.uuid4().hex[:6]}", school_id=school,
                time_zone=TZ, hours=hours, absence_cutoff="10:00"), school, token=token)
            if not reply.get("ok", False):
                console.print(f"[yellow]schedule for {school}: {reply.get('error')}[/yellow]")
            step()

    async def register_parents(self, step: Callable[[], None]) -> None:
        sem = asyncio.Semaphore(16)

        async def one(g: Guardian) -> None:
            async with sem:
                child = g.children[0]
                asked = datetime.now(UTC)
                self.check(await self.bus.request(auth.StartRegistration(
                    request_id=f"reg-{uuid.uuid4().hex[:10]}", phone=g.phone,
                    contract=child.contract, password=g.password, consent=True, email=g.email),
                    g.phone), "start registration")
                code = await self.sms_code(g.phone, asked)
                if code is None:
                    step()
                    return
                confirmed = await self.bus.request(auth.ConfirmRegistration(
                    request_id=f"conf-{uuid.uuid4().hex[:10]}", phone=g.phone, code=code), g.phone)
                self.check(confirmed, "confirm registration")
                tokens = await self.bus.request(auth.Login(
                    request_id=f"login-{uuid.uuid4().hex[:10]}", login=g.phone,
                    password=g.password, device="SchoolCard app"), g.phone)
                self.check(tokens, "login")
                g.token = tokens.get("access_token") or ""
                if g.token:
                    from jwt import decode

                    g.account_id = decode(g.token, options={"verify_signature": False})["sub"]
                    if not any(c.get("contract") == child.contract for c in decode(
                            g.token, options={"verify_signature": False}).get("children", [])):
                        await self.bus.request(auth.LinkChild(
                            request_id=f"link-{uuid.uuid4().hex[:10]}", contract=child.contract,
                            birth_date=child.birth_date.isoformat()), g.account_id, token=g.token)
                        tokens = await self.bus.request(auth.Login(
                            request_id=f"login-{uuid.uuid4().hex[:10]}", login=g.phone,
                            password=g.password, device="SchoolCard app"), g.phone)
                        g.token = tokens.get("access_token") or g.token
                    await self.preferences(g)
                    if g.push:
                        await self.bus.publish(notify.RegisterPushToken(
                            request_id=f"push-{uuid.uuid4().hex[:10]}", account_id=g.account_id,
                            token=f"fcm-{uuid.uuid4().hex}"), g.account_id, source="app:cabinet",
                            token=g.token)
                step()

        await asyncio.gather(*(one(g) for g in self.city.guardians))

    async def preferences(self, g: Guardian) -> None:
        """Parents without the app opt in to SMS for the news that matters; the featured
        parent reads everything at once, even at night."""
        channels = None if g.push else {kind: [notify.Channel.PUSH, notify.Channel.SMS]
                                        for kind in SMS_KINDS}
        quiet: tuple[str | None, str | None] = (None, None)
        if g is self.featured:
            quiet = ("02:00", "02:01")
        elif not self.quiet_hours:
            quiet = ("00:00", "00:00")
        if channels is None and quiet == (None, None):
            return
        self.check(await self.bus.request(notify.SetPreferences(
            request_id=f"pref-{uuid.uuid4().hex[:8]}", account_id=g.account_id,
            channels=channels, quiet_from=quiet[0], quiet_to=quiet[1]), g.account_id,
            token=g.token), "preferences")

    async def sms_code(self, phone: str, since: datetime,
                       timeout: float = 60) -> str | None:
        """The parent reads the SMS: the code is taken from the SMS sink's record of the last
        message to this phone received after ``since``."""
        sink = self.stack.run_dir / "sinks" / "http.jsonl"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sink.exists():
                for line in reversed(sink.read_text(encoding="utf-8").splitlines()):
                    record = json.loads(line)
                    body = record.get("body") or {}
                    if body.get("to") == phone and datetime.fromisoformat(record["at"]) >= since:
                        found = re.search(r"(?<!\d)\d{6}(?!\d)", body.get("text", ""))
                        if found:
                            return found.group(0)
            await asyncio.sleep(0.3)
        return None

    async def top_ups_and_controls(self, step: Callable[[], None]) -> None:
        paid = local(self.city.day, 0, 0) - timedelta(hours=12)
        for g in self.city.guardians:
            child = g.children[0]
            amount = self.rng.choice([300_00, 500_00, 1_000_00])
            self.paid[child.contract] += amount
            self.receipts[g.email] += 1
            await self.bus.publish(integrations.TopUpReceived(
                payment_id=f"sbp-{uuid.uuid4().hex[:12]}", contract=child.contract,
                amount=amount, sub_balance="canteen", channel="bank_card",
                receipt_email=g.email, paid_at=paid), child.contract,
                source="integrator:payments")
            if child.rides:  # paid at a terminal: the receipt goes to the parent's address
                self.paid[child.contract] += 200_00
                self.receipts[g.email] += 1
                await self.bus.publish(integrations.TopUpReceived(
                    payment_id=f"sbp-{uuid.uuid4().hex[:12]}", contract=child.contract,
                    amount=200_00, sub_balance="transit", channel="terminal", paid_at=paid),
                    child.contract, source="integrator:payments")
            step()
        featured = self.featured
        if featured.token:
            child = featured.children[0]
            await self.bus.request(wallet.SetControls(
                request_id=f"ctl-{uuid.uuid4().hex[:8]}", contract=child.contract,
                blocked_categories=["sweets"], daily_limits=wallet.DailyLimits(total=200_00)),
                child.contract, token=featured.token)
        blocked = next(s for s in self.city.students if s.blocked)
        g = next(g for g in self.city.guardians if g.children[0] is blocked)
        if g.token:
            await self.bus.request(wallet.BlockCard(request_id=f"blk-{uuid.uuid4().hex[:8]}",
                                                    contract=blocked.contract, reason="lost"),
                                   blocked.contract, token=g.token)
            # Blocked the evening before: the gate knows it before the morning's first tap
            # (wallet's CardBlocked reaches access's deny list; without the wait, a loaded
            # machine let the card in before the news arrived).
            if not await self.settle(services=("wallet", "access"), deliveries=False):
                raise RuntimeError(f"the card block did not reach access: {self.lagging}")

    async def morning(self, step: Callable[[], None]) -> None:
        day = self.city.day
        for s in self.city.students:
            if s.absent:
                step()
                continue
            arrive = local(day, 8, 31 + self.rng.randint(0, 25)) if s.late else \
                local(day, 7, 40 + self.rng.randint(0, 45))
            if s.rides:
                await self.bus.publish(integrations.ValidatorTapped(
                    tap_id=f"val-{uuid.uuid4().hex[:12]}", validator_id="val-1181",
                    vehicle_id="bus-2231", route=self.rng.choice(["29", "12", "36"]), mode="bus",
                    stop_id="stop-home", card_uid=s.card_uid,
                    tapped_at=arrive - timedelta(minutes=20),
                    offline=self.rng.random() < 0.1), s.card_uid, source="integrator:validator")
            if s.truant:
                pass
            elif s.forgot_card:
                token = self.admin_tokens.get(s.school_id, "")
                await self.bus.request(access.RecordManualEntry(
                    request_id=f"manual-{uuid.uuid4().hex[:8]}", school_id=s.school_id,
                    contract=s.contract, guard_id="guard-1", at=arrive), s.school_id,
                    token=token)
            else:
                await self.bus.publish(integrations.GateTapped(
                    tap_id=f"gate-{uuid.uuid4().hex[:12]}", gate_id=f"{s.school_id}-gate-1",
                    school_id=s.school_id, card_uid=s.card_uid, direction="in",
                    tapped_at=arrive), s.card_uid, source="integrator:turnstile")
            step()

    async def lessons_begin(self, step: Callable[[], None]) -> None:
        """The day is replayed after the fact, so access's clock-driven checks (nobody in at
        the first lesson, absence at the cut-off) would fire as soon as the schedules are set,
        before any tap. The stack runs them hourly (``ACCESS_SWEEP_INTERVAL_S``) and the
        scenario restarts access once the morning is in: its startup check then catches up,
        as a real access does after an outage."""
        # access has every tap, and notify every ride and entry, before the checks run
        await self.settle(services=("access", "transit", "notify"), deliveries=False)
        await asyncio.to_thread(self.stack.restart, "access")
        step()

    async def lunch(self, step: Callable[[], None]) -> None:
        day = self.city.day
        for s in self.city.students:
            if s.away:
                step()
                continue
            items = self.rng.sample(MENU[:4] + MENU[5:], k=self.rng.randint(2, 3))
            if s is self.featured.children[0]:
                items = [MENU[4]]  # a chocolate bar: blocked category by the parent
            await self._sale(s, items, local(day, 12, self.rng.randint(0, 40)))
            step()
        featured = self.featured.children[0]
        await self._sale(featured, [MENU[1], MENU[0], MENU[5]], local(day, 12, 45))
        await self._sale(featured, [MENU[1], MENU[1]], local(day, 13, 5))  # over the daily limit

    async def _sale(self, s: Student, items: list[tuple[Any, ...]], at: datetime) -> None:
        lines = [integrations.SaleItem(sku=sku, name=name, category=cat, allergens=al, qty=1,
                                       unit_price=price) for sku, name, cat, al, price in items]
        sale_id = f"till-{uuid.uuid4().hex[:12]}"
        self.sales[sale_id] = (s.contract, sum(line.unit_price for line in lines))
        await self.bus.publish(integrations.CanteenSaleRequested(
            sale_id=sale_id, terminal_id=f"{s.school_id}-till-1",
            school_id=s.school_id, card_uid=s.card_uid, items=lines, sold_at=at),
            s.card_uid, source="integrator:canteen-till")

    async def afternoon(self, step: Callable[[], None]) -> None:
        day = self.city.day
        for s in self.city.students:
            if s.away:
                step()
                continue
            leave = local(day, 14, self.rng.randint(0, 59))
            await self.bus.publish(integrations.GateTapped(
                tap_id=f"gate-{uuid.uuid4().hex[:12]}", gate_id=f"{s.school_id}-gate-1",
                school_id=s.school_id, card_uid=s.card_uid, direction="out", tapped_at=leave),
                s.card_uid, source="integrator:turnstile")
            if s.rides:
                await self.bus.publish(integrations.ValidatorTapped(
                    tap_id=f"val-{uuid.uuid4().hex[:12]}", validator_id="val-2040",
                    vehicle_id="tram-77", route="4", mode="tram", stop_id="stop-school",
                    card_uid=s.card_uid, tapped_at=leave + timedelta(minutes=10)),
                    s.card_uid, source="integrator:validator")
            step()

    async def auto_top_up(self, step: Callable[[], None]) -> None:
        """A parent turns on auto top-up with a threshold above the balance: wallet asks the
        payment integrator once, and the integrator (this script) pays."""
        g = next((g for g in self.city.guardians if g.token and g is not self.featured
                  and not g.children[0].away), None)
        if g is None:
            step()
            return
        child = g.children[0]
        await self.bus.request(wallet.SetAutoTopUp(
            request_id=f"auto-{uuid.uuid4().hex[:8]}", contract=child.contract, enabled=True,
            threshold=2_000_00, amount=500_00, sub_balance="canteen"), child.contract,
            token=g.token)
        self.auto_child = child

        async def requested() -> bool:
            reqs = [v for h, v in await self.bus.read_all("wallet.auto-topup-requests.v1")
                    if isinstance(v, dict) and v.get("contract") == child.contract]
            if reqs:
                self.auto_request = reqs[0]
            return bool(reqs)

        if await wait_until(requested, 60, "auto top-up request"):
            req = self.auto_request
            self.paid[child.contract] += req["amount"]
            self.receipts[g.email] += 1
            await self.bus.publish(integrations.TopUpReceived(
                payment_id=f"auto-{req['request_id']}", contract=child.contract,
                amount=req["amount"], sub_balance=req["sub_balance"], channel="auto_top_up",
                auto_top_up_request_id=req["request_id"], paid_at=datetime.now(UTC)),
                child.contract, source="integrator:payments")
        step()

    # --- the report ------------------------------------------------------------------------

    def phases(self) -> list[tuple[str, int, Callable[[Callable[[], None]], Awaitable[None]]]]:
        """The day in order: (title, steps, phase); each phase calls ``step()`` as it goes."""
        n = len(self.city.students)
        return [
            ("Issuing cards", n, self.issue_cards),
            ("School schedules", len(self.city.schools), self.set_schedules),
            ("Parents register and log in", len(self.city.guardians), self.register_parents),
            ("Top-ups and parent controls", len(self.city.guardians), self.top_ups_and_controls),
            ("Morning: rides and gate entries", n, self.morning),
            ("Lessons begin: attendance checks", 1, self.lessons_begin),
            ("Lunch in the canteen", n, self.lunch),
            ("Afternoon: exits and rides home", n, self.afternoon),
            ("Low balance -> auto top-up", 1, self.auto_top_up),
        ]

    async def settle(self, timeout: float = 240, services: tuple[str, ...] = devstack.SERVICES,
                     *, deliveries: bool = True) -> bool:
        """Wait until the day has run its course: each of ``services`` has committed
        everything on the topics it consumes (a partition without a commit counts from its
        start) and published its whole outbox, and (``deliveries``) notify has nothing left
        to send now. False on timeout."""
        from pymongo import AsyncMongoClient

        from contracts.catalog import consumed_by
        from services.runtime.broker import group_lag
        from services.runtime.kafka_security import KafkaConnection

        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.stack.env["SCHOOLCARD_MONGO_URI"], tz_aware=True)
        self.lagging: dict[tuple[str, str], int] = {}

        async def behind() -> int:
            total = 0
            for svc in services:
                topics = [t.name for t in consumed_by(svc)]
                lag = await group_lag(KafkaConnection(self.bus.bootstrap),
                                      f"schoolcard-{svc}", *topics)
                if lag:
                    self.lagging[(svc, "to consume")] = lag
                total += lag
            return total

        async def unsent() -> int:
            total = 0
            for svc in services:
                db = mongo[f"schoolcard_{svc}"]
                pending = await db[f"{svc}_outbox"].count_documents({"status": "pending"})
                if pending:
                    self.lagging[(svc, "outbox")] = pending
                total += pending
            if not deliveries:
                return total
            soon = datetime.now(UTC) + timedelta(seconds=30)
            sending = await mongo.schoolcard_notify.notify_messages.count_documents(
                {"sendable": True, "due_at": {"$lte": soon}})
            if sending:
                self.lagging[("notify", "to send")] = sending
            return total + sending

        async def quiet() -> bool:
            self.lagging = {}
            return await behind() + await unsent() == 0

        try:
            # Twice in a row: an outbox drained between the two looks means new records.
            settled = await wait_until(quiet, timeout, "all services caught up") and \
                await wait_until(quiet, timeout, "all services caught up")
            if not settled:
                console.print(f"  still behind: {self.lagging}")
            return settled
        finally:
            await mongo.close()

    async def summarize(self) -> Summary:
        """What the day produced, read back from the topics and the sinks (the report's data)."""
        topics = [t.name for t in TOPICS if t.producer in devstack.SERVICES]
        dead_topics = [f"{svc}.dead-letter.v1" for svc in devstack.SERVICES]
        named = ["notify.deliveries.v1", "wallet.sale-decisions.v1", "access.gate-decisions.v1"]
        names = list(dict.fromkeys(topics + dead_topics + named))
        records = dict(zip(names, await asyncio.gather(*map(self.bus.read_all, names)),
                           strict=True))
        summary = Summary()
        for t in TOPICS:
            if t.producer in devstack.SERVICES:
                summary.events[t.producer] += len(records[t.name])
        for svc in devstack.SERVICES:
            summary.dead_letters[svc] = len(records[f"{svc}.dead-letter.v1"])
        deliveries = [v for _, v in records["notify.deliveries.v1"] if isinstance(v, dict)]
        for v in deliveries:
            if v.get("status") == "sent":
                summary.sent[v.get("channel", "?")] += 1
            elif v.get("status") == "deferred":
                summary.deferred[v.get("channel", "?")] += 1
        for _, v in records["wallet.sale-decisions.v1"]:
            if isinstance(v, dict):
                summary.outcomes["approved" if v.get("approved")
                                 else f"declined: {v.get('reason')}"] += 1
        for _, v in records["access.gate-decisions.v1"]:
            if isinstance(v, dict) and not v.get("allowed"):
                summary.outcomes[f"gate denied: {v.get('reason')}"] += 1
        mail_dir = self.stack.run_dir / "sinks" / "mail"
        summary.mails = len(list(mail_dir.glob("*"))) // 2 if mail_dir.exists() else 0
        # A delivery record names the guardian, not the child: the child is the guardian's
        # (each generated guardian has one child).
        children = {g.account_id: g.children for g in self.city.guardians if g.account_id}
        alerts = [v for v in deliveries if v.get("kind") == "not_arrived_alert"]
        summary.alert_messages = len({v["notification_id"] for v in alerts})
        for v in alerts:
            for child in children.get(v.get("account_id") or "", []):
                summary.alerted[child.contract] = (
                    "skipped school" if child.truant else
                    "card blocked at the gate" if child.blocked else "?")
        summary.refusals = Counter(self.refusals)
        return summary

    async def report(self) -> Summary:
        """Print the day's summary and the featured parent's view; returns the summary."""
        summary = await self.summarize()
        table = Table(title="Events published per service")
        table.add_column("service")
        table.add_column("events", justify="right")
        table.add_column("dead letters", justify="right")
        for svc in devstack.SERVICES:
            table.add_row(svc, str(summary.events[svc]), str(summary.dead_letters[svc]))
        console.print(table)
        outcomes = Table(title="Till and gate outcomes")
        outcomes.add_column("outcome")
        outcomes.add_column("count", justify="right")
        for name, count in sorted(summary.outcomes.items()):
            outcomes.add_row(name, str(count))
        console.print(outcomes)
        ch = Table(title="Notifications delivered per channel")
        ch.add_column("channel")
        ch.add_column("sent", justify="right")
        ch.add_column("held for quiet hours", justify="right")
        for name in ("push", "sms", "email"):
            ch.add_row(name, str(summary.sent[name]), str(summary.deferred[name]))
        ch.add_row("(SMTP sink received)", str(summary.mails), "")
        console.print(ch)
        console.print(f"\"Rode but did not arrive\" alerts: {summary.alert_messages} messages "
                      "about " + (", ".join(f"{c} ({why})" for c, why in
                                           sorted(summary.alerted.items())) or "nobody"))
        if summary.refusals:
            console.print("Refused requests: " + ", ".join(
                f"{what} {code} x{n}" for (what, code), n in sorted(summary.refusals.items())))
        await self.parent_view()
        console.print(f"\nGenerated documents: {self.out_dir}")
        for p in self.stack.procs:
            if p.name in devstack.SERVICES:
                console.print(f"  metrics of {p.name:8}: http://127.0.0.1:{p.port}/metrics")
        if self.stack.gateway_url:
            console.print(f"HTTP API for apps (gateway): {self.stack.gateway_url}/v1 "
                          f"(OpenAPI: {self.stack.gateway_url}/openapi.json)")
        console.print(f"Logs: {self.stack.run_dir / 'logs'}")
        return summary

    async def parent_view(self) -> None:
        g = self.featured
        child = g.children[0]
        console.print(f"\n[bold]День родителя (+7 *** {g.phone[-4:]}), ребёнок {child.name}, "
                      f"договор {child.contract}[/bold]")
        if not g.token:
            console.print("  (родитель не вошёл в кабинет)")
            return
        journal = await self.bus.request(notify.GetJournal(account_id=g.account_id, limit=100),
                                         g.account_id, token=g.token)
        lines = sorted(journal.get("lines") or [], key=lambda line: line["at"])
        for line in lines:
            at = datetime.fromisoformat(line["at"].replace("Z", "+00:00")).astimezone(
                ZoneInfo(TZ))
            status = {"sent": "", "deferred": " (тихие часы: придёт утром)"}.get(
                line["status"], f" ({line['status']})")
            console.print(f"  {at:%H:%M} [{line['channel']}] {line['text']}{status}")
        journey = await self.bus.request(notify.GetJourney(
            contract=child.contract, date=self.city.day.isoformat()), child.contract,
            token=g.token)
        console.print("  [bold]Дорога в школу и обратно[/bold]")
        for step in journey.get("steps") or []:
            at = datetime.fromisoformat(step["at"].replace("Z", "+00:00")).astimezone(
                ZoneInfo(TZ))
            what = {"ride": "поездка, маршрут", "entry": "вход,", "exit": "выход,",
                    "purchase": "покупка,"}.get(step["kind"], step["kind"])
            money = f" — {format_rub(step['amount'])}" if step.get("amount") else ""
            console.print(f"    {at:%H:%M} {what} {step.get('place') or ''}{money}")
        balance = await self.bus.request(wallet.GetBalance(contract=child.contract),
                                         child.contract, token=g.token)
        if balance.get("balances"):
            b = balance["balances"]
            console.print(f"  Баланс: столовая {format_rub(b['canteen'])}, проезд "
                          f"{format_rub(b['transit'])}, общий {format_rub(b['general'])}, "
                          f"бонусы {b['bonus_points']}")
        statement = await self.bus.request(
            wallet.GetStatement(contract=child.contract, csv=True, limit=500),  # one day fits
            child.contract, token=g.token)
        if statement.get("csv"):
            (self.out_dir / f"statement-{child.contract}.csv").write_text(statement["csv"])
        day = self.city.day.isoformat()
        stats = await self.bus.request(access.GetStudentStats(
            contract=child.contract, date_from=day, date_to=day, chart=True, csv=True),
            child.contract, token=g.token)
        if stats.get("chart_svg"):
            (self.out_dir / f"arrivals-{child.contract}.svg").write_text(stats["chart_svg"])
        rides = await self.bus.request(
            transit.GetRides(contract=child.contract, csv=True, limit=500),
            child.contract, token=g.token)
        if rides.get("csv"):
            (self.out_dir / f"rides-{child.contract}.csv").write_text(rides["csv"])


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the scenario: unwind (stopping the stack on the way out).
    A KeyboardInterrupt, so that asyncio lets it through wherever it lands."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(exc: BaseException) -> None:
    raise exc


def stop_on_signals() -> None:
    """Ctrl-C, ``timeout`` or a CI cancel: say so once and raise :class:`Interrupted` in the
    main thread, even in the middle of the stack's start. Later signals are ignored so that
    stopping the stack is not cut short (a stuck stop still ends with SIGKILL)."""
    interrupted: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if interrupted:
            return
        interrupted.append(signum)
        console.print("interrupted, stopping the stack…")
        # Tasks the signal cuts short are not worth asyncio's "never retrieved" complaints.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        if devstack.defer_while_spawning(lambda: _raise(Interrupted(signum))):
            return  # raised as soon as the child being started is recorded
        raise Interrupted(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def stop_stack(stack: devstack.Stack) -> None:
    try:
        stack.down()
    except Interrupted:
        stack.down()  # the signal came while stopping: finish (no second signal raises)
        raise


async def play(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    run_dir = Path(args.run_dir).resolve()
    if (run_dir / "stack.json").exists():
        devstack.Stack.load(run_dir).down()
    stack = devstack.Stack(run_dir)
    city = generate_city(rng, args.schools, args.students)
    console.print(f"[bold]SchoolCard — a school day[/bold] ({city.day:%A %d.%m.%Y}): "
                  f"{len(city.schools)} schools, {len(city.students)} students, "
                  f"{len(city.guardians)} guardians")
    started = time.monotonic()
    keep = args.keep
    try:
        with console.status("Starting the embedded stack (broker, database, sinks, "
                            "5 services, gateway)..."):
            stack.up(service_env=SERVICE_ENV)
        console.print(f"Stack ready in {time.monotonic() - started:.0f} s")
        day = SchoolDay(stack, city, rng)
        await day.bus.start()
        try:
            with Progress(TextColumn("{task.description:34}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console) as progress:
                for title, total, phase in day.phases():
                    task = progress.add_task(title, total=total)
                    await phase(lambda task=task: progress.advance(task))
                    await day.bus.producer.flush()
                    progress.update(task, completed=total)
                settle = progress.add_task("Services catching up", total=1)
                await day.settle()
                progress.update(settle, completed=1)
            await day.report()
        finally:
            await day.bus.stop()
    except BaseException:
        keep = False  # failed or interrupted: nothing is left running
        raise
    finally:
        if not keep:
            with console.status("Stopping the stack..."):
                stop_stack(stack)
    console.print(f"[green]School day finished in {time.monotonic() - started:.0f} s[/green]")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schools", type=int, default=3)
    parser.add_argument("--students", type=int, default=160)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--run-dir", default=str(devstack.ROOT / ".run"))
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    stop_on_signals()
    try:
        code = asyncio.run(play(args))
    except Interrupted as stop:
        code = 128 + stop.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    sys.exit(code)


if __name__ == "__main__":
    main()
