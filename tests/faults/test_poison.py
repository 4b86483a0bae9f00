"""Poison mixed into valid traffic: malformed JSON, wrong types, negative, fractional and
string kopecks, 900 kB strings, a type foreign to the topic, missing envelope headers and
requests naming reply topics that cannot exist, interleaved with top-ups, canteen sales (some
for unknown cards) and turnstile taps (some for unknown cards), against wallet and access as
their own processes on the real broker and database.

The reference model is computed here: every card starts with enough money that every sale of
a known card is approved, so each account's balance is its top-ups minus its sales; an unknown
card is declined (till) or denied (turnstile). Each poison record carries an ``x-fault-probe``
header, and must appear on its service's dead-letter topic once, with its original bytes, a
reason code and at most ``max_attempts`` attempts; nothing may be parked or left in an outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from contracts.access import GetClassRegister
from contracts.catalog import DLQ_ATTEMPTS, DLQ_CODE
from contracts.envelope import ContractModel, Envelope, encode
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    GateTapped,
    SaleItem,
    TopUpReceived,
)
from contracts.wallet import GetBalance
from tests.faults.conftest import Report, World, scale
from tests.support import Integrator, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.system

SCHOOL = "izh-poison-1"
PROBE = "x-fault-probe"
START_BALANCE = 900_000_00  # every sale of a known card is approved, whatever the order
# (the model follows money only: bonus points accrued on meals are wallet's own rule)


@dataclass
class Poison:
    probe: str
    service: str
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]
    code: str


def _headers(message: ContractModel, **extra: str) -> dict[str, str]:
    return {**Envelope.new(message, source="integrator:fuzz").to_headers(), **extra}


def _poisons(n: int, card: CardIssued, rng: random.Random) -> list[Poison]:
    """``n`` of each kind, aimed at a card that exists (so only the poison is wrong)."""
    now = datetime.now(UTC)
    top_up = TopUpReceived(payment_id="p", contract=card.contract, amount=100, channel="atm",
                           paid_at=now)
    sale = CanteenSaleRequested(sale_id="s", terminal_id="till-p", school_id=SCHOOL,
                                card_uid=card.card_uid, sold_at=now,
                                items=[SaleItem(sku="bun", name="Булочка", category="bakery",
                                                qty=1, unit_price=30_00)])
    tap = GateTapped(tap_id="t", gate_id="gate-p", school_id=SCHOOL, card_uid=card.card_uid,
                     direction="in", tapped_at=now)
    balance = GetBalance(contract=card.contract)
    register = GetClassRegister(school_id=SCHOOL, class_name="1А",
                                local_date=date.today().isoformat())

    def payload(message: ContractModel, **changes: Any) -> bytes:
        return json.dumps({**json.loads(encode(message)), **changes},
                          ensure_ascii=False).encode()

    kinds: list[tuple[str, str, ContractModel, Callable[[], bytes], dict[str, str], str]] = [
        ("wallet", "integrations.topups.v1", top_up, lambda: b"{not json", {}, "not_json"),
        ("wallet", "integrations.topups.v1", top_up,
         lambda: payload(top_up, payment_id=uid("p"), amount="100"), {}, "schema_violation"),
        ("wallet", "integrations.topups.v1", top_up,
         lambda: payload(top_up, payment_id=uid("p"), amount=-100), {}, "schema_violation"),
        ("wallet", "integrations.topups.v1", top_up,
         lambda: payload(top_up, payment_id=uid("p"), amount=100.5), {}, "schema_violation"),
        ("wallet", "integrations.canteen-sales.v1", sale,
         lambda: payload(sale, sale_id=uid("s"),
                         items=[{"sku": "x", "name": "Я" * 450_000, "category": "bakery",
                                 "qty": 1, "unit_price": 100}]), {}, "schema_violation"),
        ("wallet", "integrations.topups.v1", tap, lambda: encode(tap), {}, "unexpected_type"),
        ("wallet", "integrations.topups.v1", top_up, lambda: encode(top_up), {"drop": "1"},
         "missing_headers"),
        ("wallet", "wallet.commands.v1", balance, lambda: encode(balance),
         {"ce_replyto": "no such topic!"}, "reply_topic_not_allowed"),
        ("access", "integrations.gate-taps.v1", tap, lambda: b"\x00\xff binary", {},
         "not_json"),
        ("access", "integrations.gate-taps.v1", tap,
         lambda: payload(tap, tap_id=uid("t"), tapped_at="yesterday"), {}, "schema_violation"),
        ("access", "access.commands.v1", register, lambda: encode(register),
         {"ce_replyto": "x" * 300}, "reply_topic_not_allowed"),
    ]
    poisons = []
    for _ in range(n):
        for service, topic, message, value, extra, code in kinds:
            probe = uid("probe")
            headers = ({PROBE: probe} if extra.get("drop")
                       else _headers(message, **{PROBE: probe, **extra}))
            key = rng.choice([card.contract, card.card_uid, SCHOOL])
            poisons.append(Poison(probe, service, topic, key, value(), headers, code))
    return poisons


@pytest.mark.parametrize("valid", [
    400, pytest.param(10_000, marks=[pytest.mark.slow, pytest.mark.timeout(1_800)])])
async def test_poison_mixed_into_valid_events_is_dead_lettered_and_stalls_nothing(
        valid: int, world: World, fault_report: Report) -> None:
    w = world
    valid = scale(valid) if valid > 400 else valid
    rng = random.Random(valid)
    run = uid("poison")
    now = datetime.now(UTC)
    cards = [CardIssued(contract=f"{rng.randrange(10**7, 10**8)}", card_uid=chip_uid(rng),
                        school_id=SCHOOL, school_tz="Europe/Samara", student_id=uid("stu"),
                        class_name="1А", birth_date=date(2018, 5, 5), issued_at=now)
             for _ in range(20)]
    w.start("wallet", "a")
    w.start("access", "a")
    wallet_db, access_db = w.database("wallet"), w.database("access")

    def credited() -> Counter[str]:
        return Counter(e["operation_id"] for e in wallet_db.wallet_ledger.find(
            {"operation_kind": "top_up", "account": {"$ne": "external:topup"}}))

    async with Integrator(w.bootstrap, source="integrator:fuzz") as integrator:
        for card in cards:
            await integrator.publish(card, card.contract)
            await integrator.publish(TopUpReceived(
                payment_id=f"{run}-start-{card.contract}", contract=card.contract,
                amount=START_BALANCE, channel="bank_card", paid_at=now), card.contract)
        starts = {f"{run}-start-{c.contract}" for c in cards}
        await eventually(lambda: asyncio.to_thread(lambda: set(credited()) >= starts),
                         timeout=120, what="every card topped up")

        expected: dict[str, int] = defaultdict(lambda: START_BALANCE)
        top_ups: list[str] = [f"{run}-start-{c.contract}" for c in cards]
        sales: dict[str, bool] = {}  # sale id -> approved
        taps: dict[str, bool] = {}  # tap id -> allowed
        events: list[tuple[ContractModel, str]] = []
        for i in range(valid):
            card = rng.choice(cards)
            roll = rng.random()
            if roll < 0.35:
                amount = rng.randrange(1, 50) * 100
                events.append((TopUpReceived(payment_id=f"{run}-p{i}", contract=card.contract,
                                             amount=amount, channel="terminal", paid_at=now),
                               card.contract))
                expected[card.contract] += amount
                top_ups.append(f"{run}-p{i}")
            elif roll < 0.7:
                known = rng.random() < 0.95
                price = rng.randrange(20, 120) * 100
                sale = CanteenSaleRequested(
                    sale_id=f"{run}-s{i}", terminal_id="till-1", school_id=SCHOOL,
                    card_uid=card.card_uid if known else chip_uid(rng), sold_at=now,
                    items=[SaleItem(sku="meal", name="Обед", category="hot_meal", qty=1,
                                    unit_price=price)])
                events.append((sale, sale.card_uid))
                sales[sale.sale_id] = known
                if known:
                    expected[card.contract] -= price
            else:
                known = rng.random() < 0.95
                tap = GateTapped(tap_id=f"{run}-t{i}", gate_id="gate-1", school_id=SCHOOL,
                                 card_uid=card.card_uid if known else chip_uid(rng),
                                 direction=rng.choice(["in", "out"]), tapped_at=now)
                events.append((tap, tap.card_uid))
                taps[tap.tap_id] = known
        poisons = _poisons(max(1, valid // 400), cards[0], rng)
        mixed: list[Any] = [*events, *poisons]
        rng.shuffle(mixed)
        started = time.monotonic()
        for item in mixed:
            if isinstance(item, Poison):
                await integrator.publish_raw(item.topic, item.value, item.key, item.headers)
            else:
                await integrator.publish(*item)

    async with TopicReader(w.bootstrap, "wallet.sale-decisions.v1") as sale_decisions, \
            TopicReader(w.bootstrap, "access.gate-decisions.v1") as gate_decisions, \
            TopicReader(w.bootstrap, "wallet.dead-letter.v1") as wallet_dlq, \
            TopicReader(w.bootstrap, "access.dead-letter.v1") as access_dlq:
        deadline = 120 + valid / 20

        async def all_decided(reader: TopicReader, field: str, ids: dict[str, bool]) -> bool:
            await reader.poll()
            return {r.json().get(field) for r in reader.records} >= set(ids)

        async def settled() -> bool:
            return (await all_decided(sale_decisions, "sale_id", sales)
                    and await all_decided(gate_decisions, "tap_id", taps)
                    and set(await asyncio.to_thread(credited)) >= set(top_ups))

        with contextlib.suppress(AssertionError):  # what is missing is counted below as lost
            await eventually(settled, timeout=deadline, interval=1,
                             what="every valid event decided or credited")
        drained_s = round(time.monotonic() - started, 1)
        dead = [*await wallet_dlq.read_to_end(), *await access_dlq.read_to_end()]
        await sale_decisions.read_to_end()
        await gate_decisions.read_to_end()

    sale_outcomes: dict[str, set[str]] = defaultdict(set)
    approved: dict[str, bool] = {}
    for r in sale_decisions.records:
        sale_id = r.json().get("sale_id")
        sale_outcomes[sale_id].add(r.headers.get("ce_id", ""))
        approved[sale_id] = r.json()["approved"]
    tap_outcomes: dict[str, set[str]] = defaultdict(set)
    unknown_card: dict[str, bool] = {}  # tap id -> denied as an unknown card
    for r in gate_decisions.records:
        tap_id = r.json().get("tap_id")
        tap_outcomes[tap_id].add(r.headers.get("ce_id", ""))
        unknown_card[tap_id] = r.json().get("reason") == "unknown_card"
    credits = await asyncio.to_thread(credited)
    by_probe = defaultdict(list)
    for r in dead:
        if PROBE in r.headers:
            by_probe[r.headers[PROBE]].append(r)
    balances = {doc["_id"]: sum(v for sub, v in doc["balances_by_sub"].items() if sub != "bonus")
                for doc in wallet_db.wallet_accounts.find(
                    {"_id": {"$in": [c.contract for c in cards]}})}
    left_in_outboxes = sum(db[f"{s}_outbox"].count_documents({"status": {"$ne": "sent"}})
                           for s, db in (("wallet", wallet_db), ("access", access_db)))

    lost = (sum(1 for s in sales if s not in sale_outcomes)
            + sum(1 for t in taps if t not in tap_outcomes)
            + sum(1 for p in top_ups if credits[p] == 0))
    double = (sum(len(ids) - 1 for ids in [*sale_outcomes.values(), *tap_outcomes.values()])
              + sum(n - 1 for n in credits.values() if n > 1))
    # a known card's tap may be refused for the hour or anti-passback, never as unknown
    wrong_decisions = (
        sum(1 for s, ok in sales.items() if s in approved and approved[s] != ok)
        + sum(1 for t, known in taps.items() if t in unknown_card and unknown_card[t] == known))
    poison_missing = sum(1 for p in poisons if len(by_probe[p.probe]) == 0)
    poison_wrong = sum(
        1 for p in poisons for r in by_probe[p.probe]
        if r.value != p.value or r.headers.get(DLQ_CODE) != p.code
        or int(r.headers.get(DLQ_ATTEMPTS, "99")) > 5
        or r.topic != f"{p.service}.dead-letter.v1")
    result = fault_report(
        f"poison x{len(poisons)} in {valid} events", lost=lost, double_applied=double,
        events=valid, poison=len(poisons), poison_dead_lettered=len(poisons) - poison_missing,
        poison_wrong_record=poison_wrong, wrong_decisions=wrong_decisions,
        other_dead_letters=sum(1 for r in dead if PROBE not in r.headers),
        balance_mismatches=sum(1 for c, b in balances.items() if b != expected[c]),
        left_in_outboxes=left_in_outboxes, drain_s=drained_s)
    assert (result["lost"], result["double_applied"]) == (0, 0)
    assert (poison_missing, poison_wrong, wrong_decisions) == (0, 0, 0)
    assert result["other_dead_letters"] == 0
    assert result["balance_mismatches"] == 0 and left_in_outboxes == 0
