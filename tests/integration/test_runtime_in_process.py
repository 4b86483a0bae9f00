"""The in-process runner used by integration tests works end to end: a top-up published by an
integrator is credited by wallet and its TopUpApplied comes back, stamped with the fake
clock's time; a duplicate payment id re-emits the same message id."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from contracts.integrations import CardIssued, TopUpReceived
from tests.support import FakeClock, Integrator, TopicReader, uid

# Flaky when it follows another in-process wallet in the same test process (e.g. after
# tests/integration/test_wallet_flows.py): kept out of `make test` until the cause is fixed.
# What is known (2026-11-22, reproduced with a script that starts and stops Service("wallet")
# three times in one process): the second or first instance consumes the top-up, commits the
# account and marks both outbox records "sent", yet the records never reach the topic (a fresh
# reader sees only the earlier ones), while the next instance works again. Restarts as separate
# processes do not show it (tests/system, make run's access restart), so it points at state
# shared between two FastStream brokers in one process, not at the relay's bookkeeping.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_top_up_is_credited_with_the_injected_clock_and_replayed_identically(
        service_runner, bootstrap):
    clock = FakeClock(datetime(2026, 9, 1, 6, 30, tzinfo=UTC))
    contract = f"{random.randrange(10**7, 10**8)}"
    card = CardIssued(contract=contract, card_uid=f"{random.getrandbits(56):014X}",
                      school_id="izh-1", school_tz="Europe/Samara", student_id=uid("stu"),
                      class_name="1А", birth_date=date(2019, 5, 5), issued_at=clock.now)
    payment = TopUpReceived(payment_id=uid("pay"), contract=contract, amount=150_00,
                            channel="bank_card", paid_at=clock.now)
    async with service_runner("wallet", clock=clock), Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "wallet.events.v1") as events:
        await integrator.publish(card, contract)
        await integrator.publish(payment, contract)
        await integrator.publish(payment, contract)  # the bank retried with a new message id
        applied = await events.wait_for(
            lambda r: r.key == contract and r.type.endswith("TopUpApplied"), count=2,
            timeout=60)
    first, again = (r.json() for r in applied)
    assert first["balances"]["general"] == 150_00
    assert again == first
    assert applied[0].headers["ce_id"] == applied[1].headers["ce_id"]
    assert first["applied_at"] == "2026-09-01T06:30:00Z"
