"""A service killed with SIGKILL in the middle of a stream loses nothing and applies nothing
twice once it is restarted (the small version of the fault suite in tests/faults)."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import defaultdict
from datetime import UTC, date, datetime

import pytest

from contracts.integrations import CardIssued, TopUpReceived
from tests.support import Integrator, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.system


async def test_a_wallet_killed_mid_stream_converges_without_loss_or_double_credit(
        start_service, bootstrap, mongo, infra, run_dir):
    rng = random.Random(7)
    contracts = [f"{rng.randrange(10**7, 10**8)}" for _ in range(20)]
    now = datetime.now(UTC)
    cards = [CardIssued(contract=c, card_uid=chip_uid(rng), school_id="izh-1",
                        school_tz="Europe/Samara", student_id=uid("stu"), class_name="3А",
                        birth_date=date(2016, 1, 2), issued_at=now) for c in contracts]
    run = uid("run")
    top_ups = [TopUpReceived(payment_id=f"{run}-{i}", contract=rng.choice(contracts),
                             amount=rng.randrange(1, 5_000) * 100, channel="terminal",
                             paid_at=now) for i in range(400)]
    expected: dict[str, int] = defaultdict(int)
    for t in top_ups:
        expected[t.contract] += t.amount

    wallet = start_service("wallet", instance="a")
    async with Integrator(bootstrap) as integrator:
        for c in cards:
            await integrator.publish(c, c.contract)
        accounts_col = mongo.schoolcard_wallet.wallet_accounts
        # Cards are issued long before money arrives; a top-up for a contract wallet has never
        # seen is refused (TopUpRejected), which is a different test.
        await eventually(lambda: asyncio.to_thread(
            lambda: accounts_col.count_documents({"_id": {"$in": contracts}}) == len(contracts)),
            timeout=60, what="accounts opened")
        envelopes = []
        for t in top_ups:
            envelopes.append((t, await integrator.publish(t, t.contract)))
        # Redeliveries: the same message again, and the same payment under a new message id.
        for t, env in rng.sample(envelopes, 40):
            await integrator.publish(t, t.contract, envelope=env)
            await integrator.publish(t, t.contract)

        ledger = mongo.schoolcard_wallet.wallet_ledger
        payments = {t.payment_id for t in top_ups}

        def applied() -> int:
            return ledger.count_documents({"operation_id": {"$in": list(payments)},
                                           "account": {"$in": contracts}})

        await eventually(lambda: asyncio.to_thread(lambda: applied() >= 80), timeout=60,
                         what="some top-ups applied before the crash")
        wallet.stop(sig=signal.SIGKILL)
        at_crash = applied()
        assert at_crash < len(top_ups), "the crash must happen mid-stream"

        start_service("wallet", instance="b")
        await eventually(lambda: asyncio.to_thread(lambda: applied() == len(top_ups)),
                         timeout=120, what="every top-up applied after restart")

    accounts = {d["_id"]: d for d in mongo.schoolcard_wallet.wallet_accounts.find(
        {"_id": {"$in": contracts}})}
    for contract in contracts:
        assert accounts[contract]["balances_by_sub"]["general"] == expected[contract]
        entries = list(ledger.find({"account": contract}))
        assert sum(e["amount"] for e in entries) == expected[contract]
    assert ledger.count_documents({"operation_id": {"$in": list(payments)}}) == 2 * len(top_ups)

    def ours(r):  # type: ignore[no-untyped-def]
        return r.type.endswith("TopUpApplied") and r.json()["payment_id"] in payments

    async with TopicReader(bootstrap, "wallet.events.v1") as events:
        async def all_published():  # type: ignore[no-untyped-def]
            await events.poll()
            seen = [r for r in events.records if ours(r)]
            return seen if {r.json()["payment_id"] for r in seen} == payments else None

        applied_events = await eventually(all_published, timeout=60,
                                          what="a TopUpApplied per payment")
    # At least once on the wire, but every copy of one payment carries the same message id.
    ids_per_payment: dict[str, set[str]] = defaultdict(set)
    for r in applied_events:
        ids_per_payment[r.json()["payment_id"]].add(r.headers["ce_id"])
    assert set(ids_per_payment) == payments
    assert all(len(ids) == 1 for ids in ids_per_payment.values())
