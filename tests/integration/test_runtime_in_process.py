"""The in-process runner used by integration tests works end to end: a top-up published by an
integrator is credited by wallet and its TopUpApplied comes back, stamped with the fake
clock's time; a duplicate payment id re-emits the same message id."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from contracts.integrations import CardIssued, TopUpReceived
from tests.support import FakeClock, Integrator, TopicReader, chip_uid, uid

# It was flaky for a reason in the product, not the runner: the card issuance and the payment
# travel on different topics, and when both waited for a freshly joined consumer the payment
# could be read first and was refused (unknown_contract). Wallet now parks such a payment
# until the card opens (see test_wallet_flows); this test opens the account first because it
# is about the replay of a credited payment.
pytestmark = pytest.mark.integration


async def test_a_top_up_is_credited_with_the_injected_clock_and_replayed_identically(
        service_runner, bootstrap):
    clock = FakeClock(datetime(2026, 9, 1, 6, 30, tzinfo=UTC))
    contract = f"{random.randrange(10**7, 10**8)}"
    card = CardIssued(contract=contract, card_uid=chip_uid(),
                      school_id="izh-1", school_tz="Europe/Samara", student_id=uid("stu"),
                      class_name="1А", birth_date=date(2019, 5, 5), issued_at=clock.now)
    payment = TopUpReceived(payment_id=uid("pay"), contract=contract, amount=150_00,
                            channel="bank_card", paid_at=clock.now)
    async with service_runner("wallet", clock=clock), Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "wallet.events.v1") as events:
        await integrator.publish(card, contract)
        await events.wait_for(lambda r: r.key == contract and r.type.endswith("AccountOpened"),
                              timeout=60)
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
