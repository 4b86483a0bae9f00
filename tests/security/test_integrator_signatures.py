"""The attacks integrator signatures stop, through the real broker and a real wallet (in
process, against the session's Tansu and nx-27017): anyone who can write to
``integrations.topups.v1`` publishing ``TopUpReceived`` (money from nothing), anyone who can
write to ``integrations.card-issuance.v1`` publishing ``CardReissued`` (a child's balance moved
to a card of the attacker's). Each forged record is dead-lettered ``unauthenticated`` and
changes nothing; the genuine records around it are applied.

Every test ends its forged records with a genuine one on the same key (same partition, so read
after them): once the genuine one is applied, the forged ones were read and refused, and the
balance checked then is final."""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import Envelope, encode
from contracts.integrations import CardIssued, CardReissued, TopUpReceived
from contracts.signing import HEADER_SIGNATURE, HEADER_SIGNER, SigningKey
from contracts.types import SubBalance
from services.runtime.service import Service
from services.wallet import domain as d
from tests.integration.conftest import service_runner  # noqa: F401  (the fixture)
from tests.support import UNSIGNED, DevSigners, Integrator, Record, TopicReader, chip_uid, uid

pytestmark = pytest.mark.integration

TOPUPS = "integrations.topups.v1"
CARDS = "integrations.card-issuance.v1"
TZ = "Europe/Samara"


@dataclass
class World:
    svc: Service
    integrator: Integrator
    events: TopicReader
    dead: TopicReader

    def key_of(self, integrator: str) -> SigningKey:
        """A dev key of the session's stack, as the integrator holds it."""
        return DevSigners.of(self.integrator.bootstrap).by_integrator[integrator]

    async def open_account(self) -> str:
        contract = f"{random.randrange(10**7, 10**8)}"
        await self.integrator.publish(CardIssued(
            contract=contract, card_uid=chip_uid(), school_id=uid("school").lower(),
            school_tz=TZ, student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
            issued_at=datetime.now(UTC)), contract)
        await self.event("AccountOpened", contract)
        return contract

    async def event(self, kind: str, key: str, payment_id: str | None = None) -> Record:
        [found] = await self.events.wait_for(
            lambda r: r.key == key and r.type == f"schoolcard.wallet.{kind}"
            and (payment_id is None or r.json().get("payment_id") == payment_id))
        return found

    async def genuine_top_up(self, contract: str, amount: int) -> None:
        """A top-up signed by the payment integrator, and the wait until it is applied."""
        payment = top_up(contract, amount)
        await self.integrator.publish(payment, contract)
        await self.event("TopUpApplied", contract, payment.payment_id)

    async def refusals(self, key: str, count: int) -> list[Record]:
        return await self.dead.wait_for(lambda r: r.key == key, count=count)

    async def account(self, contract: str) -> d.Account | None:
        db = self.svc.runtime.db
        doc = await db.wallet_accounts.find_one({"_id": contract})
        if doc is None:
            return None
        doc.pop("_id")
        rows = await db.wallet_operations.find({"contract": contract}).to_list(None)
        return d.Account.from_doc(doc, [(row["kind"], row["record"]) for row in rows],
                                  complete=True)

    async def general(self, contract: str) -> int:
        account = await self.account(contract)
        assert account is not None
        return account.balances.general


def top_up(contract: str, amount: int) -> TopUpReceived:
    return TopUpReceived(payment_id=uid("pay"), contract=contract, amount=amount,
                         sub_balance=SubBalance.GENERAL, channel="bank_card",
                         paid_at=datetime.now(UTC))


@pytest.fixture(scope="module")
async def world(service_runner: Any, bootstrap: str) -> AsyncIterator[World]:  # noqa: F811
    async with service_runner("wallet") as svc, Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "wallet.events.v1") as events, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as dead:
        yield World(svc, integrator, events, dead)


async def test_an_unsigned_top_up_creates_no_money_and_is_dead_lettered_unauthenticated(
        world: World) -> None:
    contract = await world.open_account()
    await world.integrator.publish(top_up(contract, 5_000_00), contract, signers=UNSIGNED)
    await world.genuine_top_up(contract, 10_00)
    [refused] = await world.refusals(contract, 1)
    assert refused.headers[DLQ_CODE] == "unauthenticated"
    assert "unsigned" in refused.headers[DLQ_REASON]
    assert "integrator:payments" in refused.headers[DLQ_REASON]
    assert await world.general(contract) == 10_00


async def test_a_top_up_signed_with_another_integrators_key_is_refused(world: World) -> None:
    """The turnstile's key is genuine and known to wallet: it just may not create money."""
    contract = await world.open_account()
    await world.integrator.publish(top_up(contract, 5_000_00), contract,
                                   sign_as=world.key_of("integrator:turnstile"))
    await world.genuine_top_up(contract, 10_00)
    [refused] = await world.refusals(contract, 1)
    assert refused.headers[DLQ_CODE] == "unauthenticated"
    assert refused.headers[HEADER_SIGNER] == "integrator:turnstile"
    assert "only integrator:payments may publish" in refused.headers[DLQ_REASON]
    assert await world.general(contract) == 10_00


async def test_a_top_up_whose_amount_was_changed_after_signing_is_refused(world: World) -> None:
    contract = await world.open_account()
    payment = top_up(contract, 1_00)
    env = Envelope.new(payment, source="integrator:payments", subject=contract)
    signature = world.key_of("integrator:payments").headers(TOPUPS, env.type, env.id,
                                                             encode(payment))
    tampered = encode(payment.model_copy(update={"amount": 9_000_00}))
    await world.integrator.publish_raw(TOPUPS, tampered, contract,
                                       {**env.to_headers(), **signature})
    # The genuine signature copied onto a new message id (a replay) does not verify either.
    replay = Envelope.new(payment, source="integrator:payments", subject=contract)
    await world.integrator.publish_raw(TOPUPS, encode(payment), contract,
                                       {**replay.to_headers(), **signature})
    await world.genuine_top_up(contract, 10_00)
    refused = await world.refusals(contract, 2)
    assert [r.headers[DLQ_CODE] for r in refused] == ["unauthenticated"] * 2
    assert all("does not match" in r.headers[DLQ_REASON] for r in refused)
    assert refused[0].value == tampered  # the original bytes, for the investigation
    assert await world.general(contract) == 10_00


async def test_a_garbled_or_unknown_signature_is_refused_and_a_signed_top_up_credited(
        world: World) -> None:
    contract = await world.open_account()
    for signer, signature in (("integrator:payments", "not base64!"),
                              ("integrator:payments", base64.b64encode(b"x" * 10).decode()),
                              ("integrator:payments#stolen", base64.b64encode(b"x" * 64).decode())):
        payment = top_up(contract, 7_000_00)
        env = Envelope.new(payment, source="integrator:payments", subject=contract)
        await world.integrator.publish_raw(TOPUPS, encode(payment), contract, {
            **env.to_headers(), HEADER_SIGNER: signer, HEADER_SIGNATURE: signature})
    await world.genuine_top_up(contract, 25_00)
    refused = await world.refusals(contract, 3)
    reasons = [r.headers[DLQ_REASON] for r in refused]
    assert [r.headers[DLQ_CODE] for r in refused] == ["unauthenticated"] * 3
    assert "not base64" in reasons[0] and "10 bytes" in reasons[1]
    assert "unknown key 'integrator:payments#stolen'" in reasons[2]
    assert await world.general(contract) == 25_00


async def test_an_unsigned_card_reissue_does_not_move_a_childs_balance_to_another_card(
        world: World) -> None:
    child = await world.open_account()
    await world.genuine_top_up(child, 300_00)
    stolen = CardReissued(old_contract=child, new_contract=f"{random.randrange(10**7, 10**8)}",
                          new_card_uid=chip_uid(), school_id="attacker-school", school_tz=TZ,
                          class_name="6А", reissued_at=datetime.now(UTC))
    await world.integrator.publish(stolen, child, signers=UNSIGNED)
    await world.integrator.publish(stolen, child,
                                   sign_as=world.key_of("integrator:payments"))
    await world.genuine_top_up(child, 1_00)  # read after the forged reissues (same key)
    refused = await world.refusals(child, 2)
    assert [r.headers[DLQ_CODE] for r in refused] == ["unauthenticated"] * 2
    assert "integrator:card-issuer" in refused[0].headers[DLQ_REASON]
    account = await world.account(child)
    assert account is not None and account.status is d.AccountStatus.ACTIVE
    assert account.balances.general == 301_00
    assert await world.account(stolen.new_contract) is None
    assert not [r for r in world.events.records if r.key == child
                and r.type == "schoolcard.wallet.AccountReissued"]


async def test_a_batch_mixing_forged_and_genuine_top_ups_credits_only_the_genuine_ones(
        world: World) -> None:
    """Sent together (one produce request, one consumer fetch): the forged records are
    refused one by one and the genuine ones around them applied in the same pass."""
    contracts = [await world.open_account() for _ in range(3)]
    genuine = {c: [top_up(c, 10_00), top_up(c, 20_00)] for c in contracts}
    payments = world.key_of("integrator:payments")
    sent = []
    for c in contracts:
        first, second = genuine[c]
        forged = [(top_up(c, 9_000_00), None),  # unsigned
                  (top_up(c, 9_000_00), world.key_of("integrator:card-issuer"))]
        for message, key in [(first, payments), *forged, (second, payments)]:
            env = Envelope.new(message, source="integrator:payments", subject=c)
            headers = env.to_headers()
            if key is not None:
                headers.update(key.headers(TOPUPS, env.type, env.id, encode(message)))
            sent.append(await world.integrator.producer.send(
                TOPUPS, encode(message), key=c.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()]))
    await asyncio.gather(*sent)
    for c in contracts:
        await world.event("TopUpApplied", c, genuine[c][1].payment_id)
        refused = await world.refusals(c, 2)
        assert [r.headers[DLQ_CODE] for r in refused] == ["unauthenticated"] * 2
        assert await world.general(c) == 30_00
