"""wallet end to end, in process, against the real broker and the real MongoDB-protocol server:
idempotent top-ups under concurrency, sales that cannot overspend, every decline reason, the
token matrix of parent controls, fares and refunds, grace meal, low balance and auto top-up,
disputes, statement CSV, bonus expiry, card reissue and bad input.

One wallet runs for the whole module with a FakeClock; every test uses its own contracts,
cards, schools and terminals, because the broker and the database are shared by the session.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import bson
import pytest
from prometheus_client import REGISTRY

from contracts import wallet as w
from contracts.auth import ChildGrant, Role
from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import ContractModel, Envelope
from contracts.integrations import (
    AutoTopUpCollectionFailed,
    CanteenSaleRequested,
    CardIssued,
    CardReissued,
    SaleItem,
    TopUpReceived,
)
from contracts.transit import FareAssessed, FareCorrected
from contracts.types import GuardianRole
from services.runtime.consumer import Inbound
from services.runtime.service import Service
from services.runtime.tokens import issue_access_token
from services.wallet import domain as d
from tests.support import (
    FakeClock,
    Integrator,
    Record,
    Requester,
    TopicReader,
    chip_uid,
    eventually,
    uid,
)

pytestmark = pytest.mark.integration

TZ = "Europe/Samara"


def new_contract() -> str:
    return f"{random.randrange(10**7, 10**8)}"


def new_card() -> str:
    return chip_uid()


def item(price: int, *, sku: str = "soup-1", category: str = "soup", qty: int = 1,
         allergens: tuple[str, ...] = (), name: str | None = None) -> SaleItem:
    return SaleItem(sku=sku, name=name or sku, category=category, allergens=list(allergens),
                    qty=qty, unit_price=price)


@dataclass
class Card:
    contract: str
    card_uid: str
    school_id: str


@dataclass
class World:
    svc: Service
    clock: FakeClock
    infra: dict[str, str]
    integrator: Integrator
    requester: Requester
    events: TopicReader
    decisions: TopicReader
    dead: TopicReader
    auto: TopicReader

    # --- acting like the outside world ---

    async def open_account(self, school_id: str | None = None) -> Card:
        card = Card(new_contract(), new_card(), school_id or uid("school").lower())
        await self.integrator.publish(CardIssued(
            contract=card.contract, card_uid=card.card_uid, school_id=card.school_id,
            school_tz=TZ, student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
            issued_at=self.clock.now), card.contract)
        await self.event("AccountOpened", card.contract)
        return card

    def token(self, contract: str | None, role: GuardianRole | None = GuardianRole.PRIMARY, *,
              staff: Role | None = None, school_id: str | None = None) -> str:
        children = [ChildGrant(contract=contract, role=role)] if contract and role else []
        return issue_access_token(
            self.infra["AUTH_PRIVATE_KEY"], account_id=f"acc_{uid('x').replace('-', '')}",
            session_id=uid("sid"), role=staff or Role.PARENT, children=children,
            school_id=school_id, now=self.clock.now.timestamp())

    async def command(self, message: ContractModel, key: str, token: str | None) -> Any:
        reply = await self.requester.send(message, key, token=token)
        return reply.json()

    async def accepted(self, message: ContractModel, key: str, token: str | None = None) -> None:
        token = token or self.token(key)
        reply = await self.command(message, key, token)
        assert reply["ok"] is True, reply

    async def top_up(self, contract: str, amount: int, sub_balance: str = "canteen",
                     **extra: Any) -> Record:
        payment = TopUpReceived(payment_id=uid("pay"), contract=contract, amount=amount,
                                sub_balance=sub_balance, channel="bank_card",
                                paid_at=self.clock.now, **extra)
        await self.integrator.publish(payment, contract)
        return await self.event("TopUpApplied", contract,
                                lambda r: r.json()["payment_id"] == payment.payment_id)

    def sale(self, card: Card, *items: SaleItem, terminal: str = "till-1",
             sale_id: str | None = None, bonus: int = 0) -> CanteenSaleRequested:
        return CanteenSaleRequested(sale_id=sale_id or uid("sale"), terminal_id=terminal,
                                    school_id=card.school_id, card_uid=card.card_uid,
                                    items=list(items), bonus_to_redeem=bonus,
                                    sold_at=self.clock.now)

    async def sell(self, sale: CanteenSaleRequested) -> dict[str, Any]:
        await self.integrator.publish(sale, sale.card_uid)
        return await self.decision(sale.sale_id)

    async def decision(self, sale_id: str) -> dict[str, Any]:
        [record] = await self.decisions.wait_for(lambda r: r.json()["sale_id"] == sale_id)
        return record.json()  # type: ignore[no-any-return]

    async def event(self, kind: str, key: str,
                    where: Callable[[Record], bool] = lambda r: True, count: int = 1) -> Record:
        found = await self.events.wait_for(
            lambda r: r.key == key and r.type == f"schoolcard.wallet.{kind}" and where(r),
            count=count)
        return found[-1]

    # --- looking inside wallet's own database ---

    async def account(self, contract: str) -> d.Account:
        db = self.svc.runtime.db
        doc = await db.wallet_accounts.find_one({"_id": contract})
        doc.pop("_id")
        rows = await db.wallet_operations.find({"contract": contract}).to_list(None)
        return d.Account.from_doc(doc, [(row["kind"], row["record"]) for row in rows],
                                  complete=True)

    async def entries(self, contract: str) -> list[d.LedgerEntry]:
        """Both legs of every posting of the contract: its own and the counter-accounts'."""
        ledger = self.svc.runtime.db.wallet_ledger
        docs = (await ledger.find({"account": contract}).to_list(None)
                + await ledger.find({"counter_account": contract}).to_list(None))
        return [d.LedgerEntry.from_doc({k: v for k, v in x.items() if k != "_id"}) for x in docs]

    async def consistent(self, contract: str) -> d.Account:
        account = await self.account(contract)
        assert d.check_ledger(account, await self.entries(contract)) == []
        return account

    def inbound(self, message: ContractModel, key: str, topic: str) -> Inbound:
        """A delivery handed straight to the handler, concurrently with the consumer."""
        return Inbound(message, Envelope.new(message, source="integrator:test", subject=key),
                       topic, 0, 0, key, None)


@pytest.fixture(scope="module")
async def world(service_runner: Any, bootstrap: str, infra: dict[str, str]) -> AsyncIterator[World]:
    clock = FakeClock(datetime(2026, 9, 1, 5, 0, tzinfo=UTC))  # 09:00 in Samara
    # outbox_takeover_s: nx-27017 answers {"status": "pending", "$or": [...]} with sent records
    # too when the second branch matches (created_at older than the takeover age, which every
    # fake-clock record is), so the relay would re-send old records forever; see README.
    async with service_runner("wallet", clock=clock, outbox_takeover_s=1e9) as svc, \
            Integrator(bootstrap) as integrator, \
            Requester(bootstrap) as requester, \
            TopicReader(bootstrap, "wallet.events.v1") as events, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as decisions, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as dead, \
            TopicReader(bootstrap, "wallet.auto-topup-requests.v1") as auto:
        yield World(svc, clock, infra, integrator, requester, events, decisions, dead, auto)


def limits(**values: int | None) -> w.DailyLimits:
    return w.DailyLimits(**values)


# --- idempotency and concurrency -------------------------------------------------------------

async def test_the_same_payment_id_delivered_twenty_times_ten_of_them_concurrently_is_credited_once(
        world: World) -> None:
    card = await world.open_account()
    payment = TopUpReceived(payment_id=uid("pay"), contract=card.contract, amount=250_00,
                            channel="terminal", paid_at=world.clock.now)
    first = await world.integrator.publish(payment, card.contract)
    # Five redeliveries of the very same message and four retries under new message ids,
    # all at once through the broker ...
    await asyncio.gather(*(world.integrator.publish(payment, card.contract, envelope=first)
                           for _ in range(5)),
                         *(world.integrator.publish(payment, card.contract) for _ in range(4)))
    # ... and ten more handed to the handler concurrently, racing the consumer.
    handler = world.svc.consumer.routes[TopUpReceived]
    await asyncio.gather(*(handler(world.inbound(payment, card.contract, "integrations.topups.v1"))
                           for _ in range(10)))
    applied = await world.event("TopUpApplied", card.contract, count=1 + 4 + 10)
    copies = [r for r in world.events.records
              if r.key == card.contract and r.type.endswith("TopUpApplied")]
    assert {r.headers["ce_id"] for r in copies} == {applied.headers["ce_id"]}
    assert len({r.value for r in copies}) == 1
    account = await world.consistent(card.contract)
    assert account.balances.general == 250_00
    assert len([e for e in await world.entries(card.contract)
                if e.operation_id == payment.payment_id]) == 2  # the wallet leg + its counter


async def test_a_hundred_concurrent_sales_beyond_the_limit_and_the_balance_overspend_nothing(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 500_00)
    await world.accepted(w.SetControls(request_id=uid("req"), contract=card.contract,
                                       daily_limits=limits(total=300_00)), card.contract)
    terminal = uid("till")
    sales = [world.sale(card, item(10_00), terminal=terminal) for _ in range(100)]
    handler = world.svc.consumer.routes[CanteenSaleRequested]
    # Half through the broker, half straight into the handler at the same time.
    await asyncio.gather(
        *(world.integrator.publish(s, s.card_uid) for s in sales[:50]),
        *(handler(world.inbound(s, s.card_uid, "integrations.canteen-sales.v1"))
          for s in sales[50:]))
    async def all_decided() -> dict[str, Any] | None:
        await world.decisions.poll()  # delivery is at least once: count distinct sales
        found = {r.json()["sale_id"]: r.json() for r in world.decisions.records
                 if r.key == terminal}
        return found if len(found) == len(sales) else None

    answers = await eventually(all_decided, timeout=60, what="a decision per sale")
    assert set(answers) == {s.sale_id for s in sales}
    approved = [a for a in answers.values() if a["approved"]]
    assert sum(a["paid_money"] for a in approved) == 300_00  # exactly the limit, never more
    assert {a["reason"] for a in answers.values() if not a["approved"]} == {"daily_limit"}
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 200_00
    assert account.spent_on(world.clock.now).total == 300_00


# --- decline reasons ----------------------------------------------------------------------------

async def test_every_decline_reason_is_answered_to_the_till_and_told_to_the_parents(
        world: World) -> None:
    card = await world.open_account()
    got: dict[str, dict[str, Any]] = {}

    async def declined(sale: CanteenSaleRequested, reason: str) -> None:
        decision = await world.sell(sale)
        assert (decision["approved"], decision["reason"]) == (False, reason), decision
        got[reason] = decision
        key = sale.card_uid if reason == "unknown_card" else card.contract
        event = await world.event("SaleDeclined", key,
                                  lambda r: r.json()["sale_id"] == sale.sale_id)
        assert event.json()["reason"] == reason

    await declined(world.sale(Card("", new_card(), card.school_id), item(50_00)), "unknown_card")
    await declined(world.sale(card, item(50_00)), "insufficient_funds")
    await world.top_up(card.contract, 400_00)
    await world.accepted(w.SetControls(
        request_id=uid("req"), contract=card.contract, daily_limits=limits(canteen=100_00),
        blocked_categories=["sweets"], blocked_items=["cola-05"], allergens=["nuts"]),
        card.contract)
    await declined(world.sale(card, item(50_00, sku="cake", allergens=("nuts", "milk"))),
                   "allergen")
    await declined(world.sale(card, item(9_00, sku="cola-05", category="drink")), "blocked_item")
    await declined(world.sale(card, item(9_00, sku="candy", category="sweets")),
                   "blocked_category")
    await declined(world.sale(card, item(60_00), item(60_00, sku="soup-2")), "daily_limit")
    assert (await world.sell(world.sale(card, item(60_00))))["approved"] is True
    await world.accepted(w.BlockCard(request_id=uid("req"), contract=card.contract),
                         card.contract, world.token(card.contract, GuardianRole.CO_GUARDIAN))
    await declined(world.sale(card, item(10_00)), "card_blocked")
    blocked = await world.command(w.GetBalance(contract=card.contract), card.contract,
                                  world.token(card.contract))
    assert blocked["blocked"] is True and blocked["balances"]["canteen"] == 340_00
    await world.accepted(w.UnblockCard(request_id=uid("req"), contract=card.contract),
                         card.contract)
    new = Card(new_contract(), new_card(), card.school_id)
    await world.integrator.publish(CardReissued(
        old_contract=card.contract, new_contract=new.contract, new_card_uid=new.card_uid,
        school_id=card.school_id, school_tz=TZ, class_name="6А", reissued_at=world.clock.now),
        card.contract)
    await world.event("AccountReissued", card.contract)
    await declined(world.sale(card, item(10_00)), "account_closed")
    fares_only = {w.DeclineReason.TRANSIT_PAYMENTS_OFF.value}  # see test_wallet_money.py
    assert set(got) == {r.value for r in w.DeclineReason} - fares_only


async def test_a_payment_id_reused_on_another_contract_is_rejected_and_credits_nothing(
        world: World) -> None:
    first, second = await world.open_account(), await world.open_account()
    paid = await world.top_up(first.contract, 100_00)
    reused = TopUpReceived(payment_id=paid.json()["payment_id"], contract=second.contract,
                           amount=100_00, sub_balance="canteen", channel="bank_card",
                           paid_at=world.clock.now)
    await world.integrator.publish(reused, second.contract)
    rejected = await world.event("TopUpRejected", second.contract)
    assert (rejected.json()["payment_id"], rejected.json()["reason"]) == (
        reused.payment_id, "payment_id_conflict")
    await world.top_up(second.contract, 5_00)  # read after the reused payment
    assert (await world.consistent(second.contract)).balances.canteen == 5_00
    assert reused.payment_id not in (await world.account(second.contract)).top_ups
    assert (await world.consistent(first.contract)).balances.canteen == 100_00


async def test_a_sale_id_reused_on_another_card_is_dead_lettered_and_debits_nothing(
        world: World) -> None:
    first, second = await world.open_account(), await world.open_account()
    await world.top_up(first.contract, 100_00)
    await world.top_up(second.contract, 100_00)
    sale = world.sale(first, item(30_00))
    assert (await world.sell(sale))["approved"] is True
    await world.integrator.publish(world.sale(second, item(30_00), sale_id=sale.sale_id),
                                   second.card_uid)
    [dead] = await world.dead.wait_for(lambda r: r.key == second.card_uid)
    assert dead.headers[DLQ_CODE] == "operation_id_conflict"
    assert sale.sale_id in dead.headers[DLQ_REASON]
    assert (await world.consistent(second.contract)).balances.canteen == 100_00


async def test_bonus_points_pay_for_a_meal_but_never_for_sweets(world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 2000_00)
    assert (await world.sell(world.sale(card, item(1000_00))))["approved"] is True  # 10_00 pts
    sweets = item(6_00, sku="candy", category="sweets")
    decision = await world.sell(world.sale(card, item(3_00), sweets, bonus=10_00))
    assert (decision["paid_bonus"], decision["paid_money"]) == (3_00, 6_00)
    posted = await world.event("SalePosted", card.contract,
                               lambda r: r.json()["paid_bonus"] == 3_00)
    assert posted.json()["bonus_accrued"] == 0  # nothing on sweets, nothing on points
    assert (await world.consistent(card.contract)).balances.bonus == 7_00


async def test_a_card_uid_shaped_like_a_bank_card_number_is_dead_lettered_and_opens_nothing(
        world: World) -> None:
    card = CardIssued(contract=new_contract(), card_uid=new_card(), school_id="izh-school-42",
                      school_tz=TZ, student_id=uid("stu"), class_name="5Б",
                      birth_date=date(2014, 3, 8), issued_at=world.clock.now)
    pan = "4111111111111111"
    payload = json.dumps({**card.model_dump(mode="json"), "card_uid": pan}).encode()
    headers = Envelope.new(card, source="integrator:test", subject=card.contract).to_headers()
    await world.integrator.publish_raw("integrations.card-issuance.v1", payload, card.contract,
                                       headers)
    [dead] = await world.dead.wait_for(lambda r: r.key == card.contract)
    assert dead.headers[DLQ_CODE] == "schema_violation"
    assert "bank card number" in dead.headers[DLQ_REASON] and pan not in dead.headers[DLQ_REASON]
    assert await world.svc.runtime.db.wallet_accounts.find_one({"_id": card.contract}) is None


async def test_a_payment_that_comes_before_its_card_waits_and_is_credited_when_the_card_opens(
        world: World) -> None:
    """Card issuance and payments travel on different topics: the parent may pay (and the
    bank retry) before wallet has read the card. The money waits, it is not refused."""
    card = Card(new_contract(), new_card(), uid("school").lower())
    payment = TopUpReceived(payment_id=uid("pay"), contract=card.contract, amount=300_00,
                            sub_balance="canteen", channel="bank_card",
                            receipt_email="parent@example.ru", paid_at=world.clock.now)
    await world.integrator.publish(payment, card.contract)
    await world.integrator.publish(payment, card.contract)  # the bank retried
    parked = world.svc.runtime.db.wallet_parked_top_ups
    await eventually(lambda: parked.find_one({"_id": payment.payment_id}), timeout=30,
                     what="the payment parked")
    assert await parked.count_documents({"contract": card.contract}) == 1
    await world.integrator.publish(CardIssued(
        contract=card.contract, card_uid=card.card_uid, school_id=card.school_id,
        school_tz=TZ, student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
        issued_at=world.clock.now), card.contract)
    applied = await world.event("TopUpApplied", card.contract)
    assert applied.json()["payment_id"] == payment.payment_id
    assert applied.json()["balances"]["canteen"] == 300_00
    assert not [r for r in world.events.records if r.key == card.contract
                and r.type.endswith("TopUpRejected")]
    assert await parked.count_documents({"contract": card.contract}) == 0
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 300_00 and list(account.top_ups) == [payment.payment_id]


async def test_a_parked_payment_whose_card_never_comes_is_rejected_for_a_refund(
        world: World) -> None:
    from services.wallet.handlers import Handlers

    contract = new_contract()
    payment = TopUpReceived(payment_id=uid("pay"), contract=contract, amount=120_00,
                            channel="bank_card", paid_at=world.clock.now)
    await world.integrator.publish(payment, contract)
    parked = world.svc.runtime.db.wallet_parked_top_ups
    await eventually(lambda: parked.find_one({"_id": payment.payment_id}), timeout=30,
                     what="the payment parked")
    expiring = Handlers(world.svc.runtime)
    await expiring.expire_parked_top_ups()  # not expired yet: stays parked
    assert await parked.find_one({"_id": payment.payment_id}) is not None
    expiring.settings = expiring.settings.model_copy(update={"parked_top_up_ttl_s": 1e-6})
    await expiring.expire_parked_top_ups()
    rejected = await world.event("TopUpRejected", contract)
    assert (rejected.json()["payment_id"], rejected.json()["reason"]) == (
        payment.payment_id, "unknown_contract")
    assert await parked.find_one({"_id": payment.payment_id}) is None


async def test_a_fare_is_debited_once_refunded_by_a_correction_and_collected_when_unpaid(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 60_00, "transit")
    ride = FareAssessed(ride_id=uid("ride"), contract=card.contract, card_uid=card.card_uid,
                        amount=40_00, tapped_at=world.clock.now)
    await world.integrator.publish(ride, card.contract)
    await world.integrator.publish(ride, card.contract)  # transit re-sent it under a new id
    debited = await world.event("FareDebited", card.contract, count=2)
    copies = [r for r in world.events.records if r.key == card.contract
              and r.type.endswith("FareDebited")]
    assert {r.headers["ce_id"] for r in copies} == {debited.headers["ce_id"]}
    correction = FareCorrected(correction_id=uid("corr"), ride_id=ride.ride_id,
                               contract=card.contract, refund=15_00, new_fare=25_00,
                               explanation="transfer_free", corrected_at=world.clock.now)
    await world.integrator.publish(correction, card.contract)
    refunded = await world.event("FareRefunded", card.contract)
    assert refunded.json()["balances"]["transit"] == 35_00
    unpaid = ride.model_copy(update={"ride_id": uid("ride"), "amount": 90_00})
    await world.integrator.publish(unpaid, card.contract)
    declined = await world.event("FareDeclined", card.contract)
    assert declined.json()["reason"] == "insufficient_funds"
    await world.top_up(card.contract, 100_00, "transit")
    settled = await world.event("DebtSettled", card.contract)
    assert settled.json()["fares_collected"] == [unpaid.ride_id]  # paid now, not written off
    assert settled.json()["fares_total"] == 90_00
    # A correction of a ride wallet never charged can never succeed: dead-lettered with why.
    bogus = correction.model_copy(update={"correction_id": uid("corr"), "ride_id": uid("ride")})
    await world.integrator.publish(bogus, card.contract)
    [dead] = await world.dead.wait_for(lambda r: bogus.correction_id.encode() in r.value)
    assert dead.headers[DLQ_CODE] == "unknown_ride"
    account = await world.consistent(card.contract)
    assert account.balances.transit == 35_00 + 100_00 - 90_00


# --- authorisation -----------------------------------------------------------------------------

async def test_set_controls_is_accepted_from_the_primary_guardian_only(world: World) -> None:
    card = await world.open_account()
    other = new_contract()
    matrix = {
        "primary": (world.token(card.contract, GuardianRole.PRIMARY), None),
        "co_guardian": (world.token(card.contract, GuardianRole.CO_GUARDIAN), "forbidden"),
        "viewer": (world.token(card.contract, GuardianRole.VIEWER), "forbidden"),
        "stranger": (world.token(other, GuardianRole.PRIMARY), "forbidden"),
        "support": (world.token(None, staff=Role.SUPPORT), "forbidden"),
        "no token": (None, "unauthenticated"),
        "forged": (world.token(card.contract)[:-4] + "AAAA", "invalid_token"),
    }
    for who, (token, error) in matrix.items():
        command = w.SetControls(request_id=uid("req"), contract=card.contract,
                                daily_limits=limits(total=100_00 + len(who)))
        reply = await world.command(command, card.contract, token)
        if error is None:
            assert reply == {"ok": True, "error": None, "request_id": command.request_id}, who
        else:
            assert (reply["ok"], reply["error"]["code"]) == (False, error), who
    account = await world.account(card.contract)
    assert account.limits.total == 100_00 + len("primary")  # only the primary's change applied
    changed = await world.event("ControlsChanged", card.contract)
    assert changed.json()["what"] == "daily_limits"


async def test_money_moves_between_sub_balances_only_for_the_primary_guardian(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00, "general")
    move = w.MoveMoney(request_id=uid("mv"), contract=card.contract, from_sub_balance="general",
                       to_sub_balance="canteen", amount=70_00)
    refused = await world.command(move, card.contract,
                                  world.token(card.contract, GuardianRole.CO_GUARDIAN))
    assert refused["error"]["code"] == "forbidden"
    await world.accepted(move, card.contract)
    await world.accepted(move, card.contract)  # the app retried: applied once
    too_much = move.model_copy(update={"request_id": uid("mv"), "amount": 50_00})
    reply = await world.command(too_much, card.contract, world.token(card.contract))
    assert reply["error"]["code"] == "insufficient_funds"
    account = await world.consistent(card.contract)
    assert (account.balances.general, account.balances.canteen) == (30_00, 70_00)


# --- grace meal, low balance, auto top-up --------------------------------------------------------

async def test_a_grace_meal_is_given_once_told_to_the_parent_and_settled_by_the_next_top_up(
        world: World) -> None:
    school = uid("school").lower()
    card = await world.open_account(school)
    admin = world.token(None, staff=Role.SCHOOL_ADMIN, school_id=school)
    stranger_admin = world.token(None, staff=Role.SCHOOL_ADMIN, school_id="other-school")
    grace = w.SetGraceMeal(request_id=uid("req"), school_id=school, enabled=True,
                           max_debt=120_00)
    assert (await world.command(grace, school, stranger_admin))["error"]["code"] == "forbidden"
    await world.accepted(grace, school, admin)
    decision = await world.sell(world.sale(card, item(85_00)))
    assert decision["approved"] is True and decision["balance_after"] == -85_00
    granted = await world.event("GraceMealGranted", card.contract)
    assert granted.json()["debt"] == 85_00
    second = await world.sell(world.sale(card, item(10_00)))
    assert (second["approved"], second["reason"]) == (False, "insufficient_funds")
    await world.top_up(card.contract, 100_00)
    await world.event("DebtSettled", card.contract)
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 15_00


async def test_low_balance_is_told_once_per_crossing_and_auto_top_up_requested_once(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 300_00)
    await world.accepted(w.SetControls(request_id=uid("req"), contract=card.contract,
                                       low_balance_threshold=150_00), card.contract)
    await world.accepted(w.SetAutoTopUp(request_id=uid("req"), contract=card.contract,
                                        enabled=True, threshold=100_00, amount=500_00),
                         card.contract)
    for price in (100_00, 60_00, 50_00, 40_00):  # 200, 140 (low), 90 (auto), 50
        assert (await world.sell(world.sale(card, item(price))))["approved"] is True
    low = await world.event("LowBalanceReached", card.contract)
    assert low.json()["balance"] == 140_00
    assert low.json()["predicted_days_left"] == 0  # 140 left after 160 spent today
    [request] = await world.auto.wait_for(lambda r: r.key == card.contract)
    asked = request.json()
    assert asked["amount"] == 500_00
    await world.integrator.publish(TopUpReceived(
        payment_id=uid("pay"), contract=card.contract, amount=500_00, sub_balance="canteen",
        channel="auto_top_up", auto_top_up_request_id=asked["request_id"],
        paid_at=world.clock.now), card.contract)
    await world.event("TopUpApplied", card.contract, count=2)
    # Exactly one request and one warning for that crossing, even with sales below it.
    assert len([r for r in await world.auto.poll() if r.key == card.contract]) == 1
    assert len([r for r in world.events.records if r.key == card.contract
                and r.type.endswith("LowBalanceReached")]) == 1
    assert (await world.consistent(card.contract)).balances.canteen == 550_00


async def test_a_failed_auto_top_up_is_told_to_the_parent_once_and_a_later_crossing_asks_again(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 300_00)
    await world.accepted(w.SetAutoTopUp(request_id=uid("req"), contract=card.contract,
                                        enabled=True, threshold=100_00, amount=500_00),
                         card.contract)
    assert (await world.sell(world.sale(card, item(250_00))))["approved"] is True
    [request] = await world.auto.wait_for(lambda r: r.key == card.contract)
    first = request.json()["request_id"]
    failure = AutoTopUpCollectionFailed(request_id=first, contract=card.contract,
                                        reason="card_declined", failed_at=world.clock.now)
    await world.integrator.publish(failure, card.contract)
    failed = await world.event("AutoTopUpFailed", card.contract)
    assert failed.json() | {"failed_at": None} == {
        "contract": card.contract, "request_id": first, "amount": 500_00,
        "reason": "card_declined", "failed_at": None}
    # The integrator re-sends its failure under a new message id: nothing is told twice. A
    # small top-up behind it on the same partition shows it was read.
    await world.integrator.publish(failure, card.contract)
    await world.top_up(card.contract, 10_00)
    assert (await world.sell(world.sale(card, item(20_00))))["approved"] is True  # 40 < 100
    again = await world.auto.wait_for(lambda r: r.key == card.contract, count=2)
    assert [r.json()["request_id"] for r in again] == [first, f"auto-{card.contract}-2"]
    assert len([r for r in world.events.records if r.key == card.contract
                and r.type.endswith("AutoTopUpFailed")]) == 1
    assert (await world.account(card.contract)).auto_top_up_pending == f"auto-{card.contract}-2"


async def test_the_low_balance_alert_names_the_pocket_that_crossed_and_re_arms_on_a_money_move(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00, "general")
    await world.accepted(w.SetControls(request_id=uid("req"), contract=card.contract,
                                       low_balance_threshold=80_00), card.contract)
    await world.integrator.publish(FareAssessed(
        ride_id=uid("ride"), contract=card.contract, card_uid=card.card_uid, amount=40_00,
        tapped_at=world.clock.now), card.contract)
    low = await world.event("LowBalanceReached", card.contract)
    assert (low.json()["sub_balance"], low.json()["balance"]) == ("general", 60_00)
    await world.top_up(card.contract, 50_00, "transit")  # meal funds still 60: not re-armed
    await world.accepted(w.MoveMoney(request_id=uid("mv"), contract=card.contract,
                                     from_sub_balance="transit", to_sub_balance="canteen",
                                     amount=30_00), card.contract)  # 90: re-armed
    assert (await world.sell(world.sale(card, item(20_00))))["approved"] is True
    again = await world.event("LowBalanceReached", card.contract, count=2)
    assert (again.json()["sub_balance"], again.json()["balance"]) == ("canteen", 70_00)


# --- disputes -----------------------------------------------------------------------------------

async def test_a_disputed_sale_line_is_refunded_once_by_staff_and_never_beyond_the_charge(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 200_00)
    sale = world.sale(card, item(45_00, sku="bun", category="bakery"), item(30_00))
    assert (await world.sell(sale))["approved"] is True
    dispute = w.OpenDispute(request_id=uid("dsp"), contract=card.contract,
                            operation_id=sale.sale_id, line=0, comment="Булочку не выдали.")
    viewer = world.token(card.contract, GuardianRole.VIEWER)
    assert (await world.command(dispute, card.contract, viewer))["error"]["code"] == "forbidden"
    await world.accepted(dispute, card.contract,
                         world.token(card.contract, GuardianRole.CO_GUARDIAN))
    await world.event("DisputeOpened", card.contract)
    support = world.token(None, staff=Role.SUPPORT)
    too_much = w.ResolveDispute(request_id=uid("req"), contract=card.contract,
                                dispute_id=dispute.request_id, approve=True, refund=45_01)
    reply = await world.command(too_much, card.contract, support)
    assert reply["error"]["code"] == "refund_exceeds_charge"
    approve = too_much.model_copy(update={"request_id": uid("req"), "refund": 45_00})
    parent = await world.command(approve, card.contract, world.token(card.contract))
    assert parent["error"]["code"] == "forbidden"
    await asyncio.gather(*(world.accepted(approve.model_copy(update={"request_id": uid("req")}),
                                          card.contract, support) for _ in range(3)))
    resolved = await world.event("DisputeResolved", card.contract)
    assert resolved.json()["approved"] is True and resolved.json()["refunded"] == 45_00
    refund = await world.event("SaleLineRefunded", card.contract)
    assert refund.json()["money"] == 45_00
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 200_00 - 75_00 + 45_00
    assert len([r for r in world.events.records if r.key == card.contract
                and r.type.endswith("SaleLineRefunded")]) == 1


async def test_staff_refund_a_sale_line_once_and_a_parent_is_refused(world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 200_00)
    sale = world.sale(card, item(45_00, sku="bun", category="bakery"), item(30_00))
    assert (await world.sell(sale))["approved"] is True
    refund = w.RefundSaleLine(request_id=uid("rfd"), contract=card.contract,
                              sale_id=sale.sale_id, line=0, amount=45_00)
    support = world.token(None, staff=Role.SUPPORT)
    refused = {
        "primary guardian": world.token(card.contract),
        "school admin": world.token(None, staff=Role.SCHOOL_ADMIN, school_id=card.school_id),
        "canteen operator": world.token(None, staff=Role.CANTEEN_OPERATOR,
                                        school_id=card.school_id),
    }
    for who, token in refused.items():
        reply = await world.command(refund, card.contract, token)
        assert (reply["ok"], reply["error"]["code"]) == (False, "forbidden"), who
    await world.accepted(refund, card.contract, support)
    await world.accepted(refund, card.contract, support)  # the staff app retried: refunds once
    refunded = await world.event("SaleLineRefunded", card.contract)
    assert (refunded.json()["refund_id"], refunded.json()["line"], refunded.json()["money"]) == (
        f"staff:{refund.request_id}", 0, 45_00)
    beyond = refund.model_copy(update={"request_id": uid("rfd"), "amount": 1})
    assert (await world.command(beyond, card.contract, support))["error"]["code"] == (
        "refund_exceeds_charge")
    unknown = refund.model_copy(update={"request_id": uid("rfd"), "sale_id": uid("sale")})
    assert (await world.command(unknown, card.contract, support))["error"]["code"] == (
        "unknown_sale")
    account = await world.consistent(card.contract)
    assert account.balances.canteen == 200_00 - 75_00 + 45_00
    assert len([r for r in world.events.records if r.key == card.contract
                and r.type.endswith("SaleLineRefunded")]) == 1


async def test_the_sales_report_of_a_school_day_is_for_its_canteen_supplier_and_admin_only(
        world: World) -> None:
    school = uid("school").lower()
    rich, poor = await world.open_account(school), await world.open_account(school)
    elsewhere = await world.open_account()
    await world.top_up(rich.contract, 1000_00)
    await world.top_up(poor.contract, 10_00)
    await world.top_up(elsewhere.contract, 100_00)
    soup, bun = item(50_00, sku="soup", category="soup"), item(20_00, sku="bun",
                                                                 category="bakery", qty=2)
    sales = [world.sale(rich, soup, bun, terminal="till-a"), world.sale(rich, soup,
                                                                       terminal="till-b"),
             world.sale(poor, soup, terminal="till-a"),  # declined: insufficient funds
             world.sale(elsewhere, soup, terminal="till-a")]  # another school
    for sale in sales:
        await world.sell(sale)
    await world.accepted(w.RefundSaleLine(request_id=uid("rfd"), contract=rich.contract,
                                          sale_id=sales[1].sale_id, line=0, amount=50_00),
                         rich.contract, world.token(None, staff=Role.SUPPORT))
    query = w.GetSalesReport(school_id=school, date=world.clock.now.date().isoformat())
    supplier = world.token(None, staff=Role.CANTEEN_OPERATOR, school_id=school)
    report = await world.command(query, school, supplier)
    assert report["ok"] is True, report
    totals = {k: report[k] for k in ("approved_sales", "approved_amount", "paid_money",
                                     "declined_sales", "declined_amount", "refunds",
                                     "refunded_amount", "refunded_money")}
    assert totals == {"approved_sales": 2, "approved_amount": 140_00, "paid_money": 140_00,
                      "declined_sales": 1, "declined_amount": 50_00, "refunds": 1,
                      "refunded_amount": 50_00, "refunded_money": 50_00}
    assert [(x["terminal_id"], x["category"], x["sales"], x["quantity"], x["amount"])
            for x in report["lines"]] == [("till-a", "bakery", 1, 2, 40_00),
                                          ("till-a", "soup", 1, 1, 50_00),
                                          ("till-b", "soup", 1, 1, 50_00)]
    assert report["declines"] == [{"reason": "insufficient_funds", "sales": 1,
                                   "amount": 50_00}]
    assert [(x["terminal_id"], x["category"], x["money"]) for x in report["refund_lines"]] == [
        ("till-b", "soup", 50_00)]
    admin = world.token(None, staff=Role.SCHOOL_ADMIN, school_id=school)
    assert (await world.command(query, school, admin))["approved_sales"] == 2
    refused = {
        "supplier of another school": world.token(None, staff=Role.CANTEEN_OPERATOR,
                                                  school_id="other-school"),
        "admin of another school": world.token(None, staff=Role.SCHOOL_ADMIN,
                                               school_id="other-school"),
        "support": world.token(None, staff=Role.SUPPORT),
        "parent": world.token(rich.contract),
    }
    for who, token in refused.items():
        reply = await world.command(query, school, token)
        assert (reply["ok"], reply["error"]["code"]) == (False, "forbidden"), who


# --- statement ---------------------------------------------------------------------------------

async def test_the_statement_filters_by_period_kind_and_status_and_exports_csv(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00)
    await world.sell(world.sale(card, item(45_50, name="=cmd", category="hot_meal")))
    await world.sell(world.sale(card, item(99_00)))  # declined: insufficient funds
    token = world.token(card.contract, GuardianRole.CO_GUARDIAN)
    today = world.clock.now.date().isoformat()
    everything = await world.command(w.GetStatement(contract=card.contract, csv=True),
                                     card.contract, token)
    assert [(x["kind"], x["status"], x["amount"]) for x in everything["lines"]] == [
        ("topup", "posted", 100_00), ("sale", "posted", -45_50), ("sale", "declined", 0)]
    rows = list(csv.reader(io.StringIO(everything["csv"])))
    assert rows[0][:5] == ["date", "time", "kind", "status", "amount_rub"]
    assert rows[2][4] == "-45.50"
    assert rows[2][9].startswith("'=cmd")  # a till's item name cannot run as a formula
    declined = await world.command(w.GetStatement(contract=card.contract, kinds=["sale"],
                                                  status="declined", date_from=today,
                                                  date_to=today), card.contract, token)
    assert [x["amount"] for x in declined["lines"]] == [0]
    assert declined["csv"] is None
    later = await world.command(w.GetStatement(contract=card.contract, date_from="2027-01-01"),
                                card.contract, token)
    assert later["lines"] == []
    bad = await world.command(w.GetStatement(contract=card.contract, kinds=["lottery"]),
                              card.contract, token)
    assert bad["error"]["code"] == "invalid_filter"
    stranger = await world.command(w.GetStatement(contract=card.contract), card.contract,
                                   world.token(new_contract()))
    assert stranger["error"]["code"] == "forbidden"


async def test_a_long_statement_pages_with_a_cursor_into_the_whole_statement(
        world: World) -> None:
    card = await world.open_account()
    for _ in range(7):
        await world.top_up(card.contract, 10_00)
    for _ in range(4):
        await world.sell(world.sale(card, item(5_00)))
    token = world.token(card.contract, GuardianRole.CO_GUARDIAN)
    whole = await world.command(w.GetStatement(contract=card.contract, limit=500),
                                card.contract, token)
    assert len(whole["lines"]) == 11 and whole["next_cursor"] is None
    pages, cursor = [], None
    while True:
        reply = await world.command(w.GetStatement(contract=card.contract, limit=3,
                                                   cursor=cursor), card.contract, token)
        pages.append(reply["lines"])
        cursor = reply["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 3, 2]
    assert [x for p in pages for x in p] == whole["lines"]
    first = await world.command(w.GetStatement(contract=card.contract, limit=3),
                                card.contract, token)
    other_filters = await world.command(w.GetStatement(contract=card.contract, kinds=["sale"],
                                                       cursor=first["next_cursor"]),
                                        card.contract, token)
    assert other_filters["error"]["code"] == "invalid_cursor"


# --- reissue and bad input ----------------------------------------------------------------------

async def test_a_reissued_card_moves_the_balance_and_pays_with_the_new_card(world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 80_00)
    new = Card(new_contract(), new_card(), card.school_id)
    reissue = CardReissued(old_contract=card.contract, new_contract=new.contract,
                           new_card_uid=new.card_uid, school_id=card.school_id, school_tz=TZ,
                           class_name="6А", reissued_at=world.clock.now)
    await world.integrator.publish(reissue, card.contract)
    await world.integrator.publish(reissue, card.contract)  # redelivered under a new id
    moved = await world.event("AccountReissued", card.contract)
    assert moved.json()["moved"]["canteen"] == 80_00
    assert (await world.sell(world.sale(new, item(30_00))))["approved"] is True
    old, current = await world.consistent(card.contract), await world.consistent(new.contract)
    assert old.status is d.AccountStatus.CLOSED and old.balances.money == 0
    assert current.balances.canteen == 50_00


async def test_bad_sales_are_dead_lettered_with_the_reason_and_the_consumer_keeps_going(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 100_00)
    good = world.sale(card, item(10_00))
    raw = good.model_dump(mode="json")
    for bad_price in (-500, 12.5):
        payload = {**raw, "sale_id": uid("bad"),
                   "items": [{**raw["items"][0], "unit_price": bad_price}]}
        headers = Envelope.new(good, source="integrator:test").to_headers()
        await world.integrator.publish_raw("integrations.canteen-sales.v1",
                                           json.dumps(payload).encode(),
                                           card.card_uid, headers)
    assert (await world.sell(good))["approved"] is True
    reused = good.model_copy(update={"items": [item(99_00)]})  # same sale id, other content
    await world.integrator.publish(reused, card.card_uid)
    dead = await world.dead.wait_for(lambda r: r.key == card.card_uid, count=3)
    codes = [r.headers[DLQ_CODE] for r in dead]
    assert codes == ["schema_violation", "schema_violation", "idempotency_conflict"]
    assert "unit_price" in dead[0].headers[DLQ_REASON]
    assert (await world.consistent(card.contract)).balances.canteen == 90_00


# --- bonuses (moves the module's clock: keep last) ------------------------------------------------

async def test_bonus_points_expire_when_their_month_is_twelve_months_old_on_the_daily_tick(
        world: World) -> None:
    card = await world.open_account()
    await world.top_up(card.contract, 500_00)
    assert (await world.sell(world.sale(card, item(300_00))))["approved"] is True
    assert (await world.account(card.contract)).balances.bonus == 3_00
    [tick] = [t for t in world.svc.runtime.ticks if t.name == "bonus-expiry"]
    await tick.run()
    assert (await world.account(card.contract)).balances.bonus == 3_00  # not yet
    started = world.clock.now
    world.clock.advance(days=366 + 31)  # the end of the accrual month, a year later
    try:
        await tick.run()
        await tick.run()  # a second scheduler run expires nothing twice
    finally:
        world.clock.now = started
    expired = await world.event("BonusExpired", card.contract)
    assert expired.json()["points"] == 3_00
    account = await world.consistent(card.contract)
    assert account.balances.bonus == 0


# --- bounded aggregate ---------------------------------------------------------------------------

async def test_a_school_year_of_operations_leaves_the_account_document_small(
        world: World) -> None:
    """180 school days of one top-up, two meals and four rides (1,260 operations): the
    account document stays far under MongoDB's 16 MB (and under 16 KB), the history is in
    wallet_operations, and the statement still pages through all of it."""
    card = await world.open_account()
    # Enough for the whole year's spending whatever order the three topics are read in.
    await world.top_up(card.contract, 60_000_00, "general")
    year_start = world.clock.now - timedelta(days=364)
    for n in range(180):
        day = year_start + timedelta(days=2 * n, hours=3)
        await world.integrator.publish(TopUpReceived(
            payment_id=uid("pay"), contract=card.contract, amount=500_00,
            sub_balance="general", channel="bank_card", paid_at=day), card.contract)
        for meal in range(2):
            sale = world.sale(card, item(85_00))
            await world.integrator.publish(
                sale.model_copy(update={"sold_at": day + timedelta(hours=meal)}), card.card_uid)
        for _ in range(4):
            await world.integrator.publish(FareAssessed(
                ride_id=uid("ride"), contract=card.contract, card_uid=card.card_uid,
                amount=35_00, tapped_at=day), card.contract)
    db = world.svc.runtime.db
    await eventually(lambda: _count(db.wallet_operations, {"contract": card.contract},
                                    1 + 180 * 7), timeout=180, what="a year applied")
    doc = await db.wallet_accounts.find_one({"_id": card.contract})
    size = len(bson.encode(doc))
    assert size < 16 * 1024, size
    assert len(doc["bonus_lots"]) <= 13
    account = await world.consistent(card.contract)
    assert account.balances.money == 60_000_00 + 180 * (500_00 - 2 * 85_00 - 4 * 35_00)
    lines, cursor = [], None
    while True:
        page = await world.command(w.GetStatement(contract=card.contract, limit=500,
                                                  cursor=cursor), card.contract,
                                   world.token(card.contract))
        lines += page["lines"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(lines) == 1 + 180 * 7


async def _count(collection: Any, query: dict[str, Any], expected: int) -> bool:
    return await collection.count_documents(query) == expected


# --- domain counters --------------------------------------------------------------------------

def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_domain_counters_count_each_committed_event_once_and_a_redelivery_not_at_all(
        world: World) -> None:
    card = await world.open_account()
    before = (counted("schoolcard_wallet_top_ups_total", outcome="applied"),
              counted("schoolcard_wallet_top_up_kopecks_total"),
              counted("schoolcard_wallet_sales_total"),
              counted("schoolcard_wallet_declines_total", what="sale",
                      reason="insufficient_funds"))
    payment = TopUpReceived(payment_id=uid("pay"), contract=card.contract, amount=100_00,
                            sub_balance="canteen", channel="bank_card", paid_at=world.clock.now)
    first = await world.integrator.publish(payment, card.contract)
    await world.event("TopUpApplied", card.contract)
    await world.integrator.publish(payment, card.contract, envelope=first)  # redelivered
    await world.integrator.publish(payment, card.contract)  # the bank retried, new message id
    await world.top_up(card.contract, 50_00)  # same key, after them: they were handled
    assert (await world.sell(world.sale(card, item(60_00))))["approved"] is True
    declined = await world.sell(world.sale(card, item(200_00)))
    assert declined["approved"] is False and declined["reason"] == "insufficient_funds"
    await world.event("SaleDeclined", card.contract)
    after = (counted("schoolcard_wallet_top_ups_total", outcome="applied"),
             counted("schoolcard_wallet_top_up_kopecks_total"),
             counted("schoolcard_wallet_sales_total"),
             counted("schoolcard_wallet_declines_total", what="sale",
                     reason="insufficient_funds"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 150_00, 1, 1]
