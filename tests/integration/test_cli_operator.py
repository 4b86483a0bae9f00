"""The operator CLI against the session's real broker, run as `python -m services.cli` the way
an operator runs it: a top-up published by the CLI is read back with `tail`; a dead letter
planted on wallet.dead-letter.v1 is listed and replayed to its source topic without the dlq_*
headers; a balance query is answered by a stand-in for wallet over apps.replies.v1 with a
support token signed by --as-support; consumer lag is computed from committed offsets."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.envelope import Envelope, encode
from contracts.integrations import TopUpReceived
from contracts.wallet import BalanceReply, Balances
from deploy.local import stack as devstack
from services.runtime.broker import provision_topics
from services.runtime.settings import InfraSettings
from services.runtime.tokens import verify_access_token
from tests.support import Integrator, TopicReader, uid

pytestmark = pytest.mark.integration

TOPUPS = "integrations.topups.v1"
DLQ = "wallet.dead-letter.v1"


async def schoolcard(bootstrap: str, run_dir: Path, *args: str,
                     expect: int = 0) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SCHOOLCARD_KAFKA_BOOTSTRAP", "SCHOOLCARD_TOKEN")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "--bootstrap", bootstrap, "--run-dir",
        str(run_dir), *args, cwd=devstack.ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == expect, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    return stdout, stderr


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
async def topics(infra: dict[str, str]) -> None:
    await provision_topics(InfraSettings(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                                         mongo_uri=infra["SCHOOLCARD_MONGO_URI"],
                                         topic_partitions=3))


async def test_publish_top_up_and_read_it_back_with_tail(bootstrap, run_dir, topics):
    contract = f"{random.randrange(10**7, 10**8)}"
    payment = uid("pay")
    out, _ = await schoolcard(bootstrap, run_dir, "--json", "publish", "topup", "-c", contract,
                              "--amount", "150,50", "--payment-id", payment)
    [sent] = lines(out)
    assert sent["topic"] == TOPUPS and sent["published"] is True

    out, _ = await schoolcard(bootstrap, run_dir, "--json", "tail", TOPUPS, "--from-beginning",
                              "--no-follow", "--key", contract)
    [record] = lines(out)
    assert (record["partition"], record["offset"], record["id"]) == (
        sent["partition"], sent["offset"], sent["id"])
    assert record["type"] == "schoolcard.integrations.TopUpReceived"
    assert record["payload"]["payment_id"] == payment
    assert record["payload"]["amount"] == 15050

    out, err = await schoolcard(bootstrap, run_dir, "tail", TOPUPS, "--from-beginning",
                                "--no-follow", "--key", contract)
    assert "integrations.TopUpReceived" in out and "amount=150,50 ₽" in out
    assert "1 record(s)" in err


async def test_dead_letter_is_listed_and_replayed_without_dlq_headers(bootstrap, run_dir,
                                                                     topics):
    contract = f"{random.randrange(10**7, 10**8)}"
    original = TopUpReceived(payment_id=uid("pay"), contract=contract, amount=500_00,
                             channel="terminal", paid_at=datetime.now(UTC))
    envelope = Envelope.new(original, source="integrator:bank-izh", subject=contract)
    dlq_headers = {"dlq_code": "processing_failed", "dlq_reason": "RuntimeError: planted",
                   "dlq_source_topic": TOPUPS, "dlq_source_partition": "0",
                   "dlq_source_offset": "7", "dlq_consumer_group": "schoolcard-wallet",
                   "dlq_failed_at": datetime.now(UTC).isoformat(), "dlq_attempts": "5"}
    async with Integrator(bootstrap) as integrator:
        await integrator.publish_raw(DLQ, encode(original), contract,
                                     {**envelope.to_headers(), **dlq_headers})

    out, _ = await schoolcard(bootstrap, run_dir, "--json", "dlq", "list", "wallet",
                              "--limit", "1000")
    [planted] = [r for r in lines(out) if r["key"] == contract]
    assert planted["dlq"] == dlq_headers
    assert planted["type"] == "schoolcard.integrations.TopUpReceived"
    out, _ = await schoolcard(bootstrap, run_dir, "dlq", "list", "wallet", "--limit", "1000")
    assert "processing_failed" in out and "RuntimeError: planted" in out

    out, _ = await schoolcard(bootstrap, run_dir, "--json", "dlq", "replay", "wallet",
                              "--offset", str(planted["offset"]), "--partition",
                              str(planted["partition"]))
    [replayed] = lines(out)
    assert replayed["to_topic"] == TOPUPS and replayed["replayed"] is True

    async with TopicReader(bootstrap, TOPUPS) as reader:
        [back] = await reader.wait_for(
            lambda r: r.partition == replayed["to_partition"]
            and r.offset == replayed["to_offset"], timeout=10)
    assert back.key == contract and back.value == encode(original)
    assert back.headers == envelope.to_headers()  # same ce_id, no dlq_* left


async def test_balance_query_with_a_support_token_is_answered_over_app_replies(
        bootstrap, run_dir, infra, topics):
    """A stand-in for wallet answers GetBalance the way the runtime does (reply on ce_replyto,
    same correlation id); the CLI's token is checked with the stack's public key."""
    contract = f"{random.randrange(10**7, 10**8)}"
    seen: dict[str, Any] = {}

    async def stand_in() -> None:
        async with TopicReader(bootstrap, "wallet.commands.v1") as commands, \
                Integrator(bootstrap, source="wallet") as wallet:
            [query] = await commands.wait_for(lambda r: r.key == contract, timeout=20)
            seen["claims"] = verify_access_token(query.headers["authorization"],
                                                 infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                                                 audience="wallet")
            cause = Envelope.from_headers(query.headers)
            reply = BalanceReply(contract=contract, balances=Balances(
                general=123_450, canteen=0, transit=3_000, bonus_points=7))
            await wallet.publish(reply, cause.correlation_id, topic=cause.reply_to,
                                 envelope=Envelope.new(reply, source="wallet", cause=cause,
                                                       subject=cause.correlation_id))

    responder = asyncio.create_task(stand_in())
    try:
        out, _ = await schoolcard(bootstrap, run_dir, "--json", "balance", contract,
                                  "--as-support", "--timeout", "20")
    finally:
        await asyncio.wait_for(responder, timeout=20)
    assert json.loads(out)["balances"]["general"] == 123_450
    assert seen["claims"].role == "support"


async def test_lag_of_a_group_with_committed_offsets(bootstrap, run_dir, topics):
    group = uid("cli-lag")
    contract = f"{random.randrange(10**7, 10**8)}"
    async with Integrator(bootstrap) as integrator:
        for i in range(3):
            await integrator.publish(TopUpReceived(
                payment_id=uid("pay"), contract=contract, amount=100 + i, channel="atm",
                paid_at=datetime.now(UTC)), contract)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(TOPUPS, p) for p in sorted(consumer.partitions_for_topic(TOPUPS)
                                                         or {0, 1, 2})]
        ends = await consumer.end_offsets(tps)
        tp = max(tps, key=lambda t: ends[t])  # the key's partition holds at least 3 records
        end = ends[tp]
        consumer.assign([tp])
        await consumer.commit({tp: end - 2})
    finally:
        await consumer.stop()
    out, _ = await schoolcard(bootstrap, run_dir, "--json", "lag", "--group", group)
    [info] = json.loads(out)
    [row] = info["partitions"]
    assert (row["topic"], row["partition"], row["committed"]) == (TOPUPS, tp.partition, end - 2)
    assert row["end"] >= end and info["lag"] == row["lag"] >= 2
