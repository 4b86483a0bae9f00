"""Reference pipelines for the city benchmark (issue 13 §4), each run as its own process.

Both do the same minimal work per input message: an inbox marker (the message id), a state
update (a counter per key), an outbox record, and the outbox published to an output topic
(value ``{"in": <input message id>}``, same key). The benchmark publishes the city's inputs to
their input topic and counts the outputs.

* ``raw`` — hand-tuned, no framework: aiokafka ``getmany`` (``fetch_max_wait_ms=10``, up to
  ``--max-records`` records), one PyMongo async transaction per fetched batch (bulk inbox
  insert, bulk upserts, bulk outbox insert), the batch's outbox sent with one producer flush,
  then marked published, then the offsets committed.
* ``naive`` — the tutorial shape: one FastStream ``@broker.subscriber`` handler per message,
  one write at a time (inbox insert, find + update of the state, outbox insert, publish and
  wait, mark published), FastStream's and aiokafka's default settings. That includes the
  default ``fetch_max_wait_ms`` (500): the dev broker (Tansu) answers a waiting fetch only
  when the wait ends, which is part of what a tutorial set-up pays here.

``python -m tests.bench.references raw|naive --bootstrap B --mongo URI --db D --topic-in I
--topic-out O --group G`` (runs until SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.write_concern import WriteConcern


def _message_id(headers: Any) -> str:
    for k, v in headers or ():
        if k == "ce_id":
            return bytes(v).decode()
    raise ValueError("input without ce_id")


def _out(message_id: str) -> bytes:
    return json.dumps({"in": message_id}).encode()


async def run_raw(args: argparse.Namespace, stop: asyncio.Event) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongo, tz_aware=True)
    db = client[args.db]
    consumer = AIOKafkaConsumer(args.topic_in, bootstrap_servers=args.bootstrap,
                                group_id=args.group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                max_partition_fetch_bytes=8 << 20, fetch_max_bytes=32 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=0,
                                max_batch_size=1 << 20)
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=args.max_records)
            records = [r for rs in fetched.values() for r in rs]
            if not records:
                continue
            now = datetime.now(UTC)
            inbox, ops, outbox = [], [], []
            for r in records:
                mid = _message_id(r.headers)
                key = (r.key or b"").decode()
                inbox.append({"_id": mid, "at": now})
                ops.append(UpdateOne({"_id": key}, {"$inc": {"n": 1}, "$set": {"last": mid}},
                                     upsert=True))
                outbox.append({"_id": mid, "key": key, "value": _out(mid), "status": "pending",
                               "at": now})
            async with client.start_session() as session:
                await session.start_transaction(write_concern=WriteConcern("majority"))
                try:
                    await db.inbox.insert_many(inbox, session=session)
                    await db.state.bulk_write(ops, session=session)
                    await db.outbox.insert_many(outbox, session=session)
                    await session.commit_transaction()
                except BaseException:
                    if session.in_transaction:
                        await session.abort_transaction()
                    raise
            sent = [await producer.send(args.topic_out, o["value"], key=o["key"].encode())
                    for o in outbox]
            await asyncio.gather(*sent)
            await db.outbox.update_many({"_id": {"$in": [o["_id"] for o in outbox]}},
                                        {"$set": {"status": "published"}})
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        await client.close()


async def run_naive(args: argparse.Namespace, stop: asyncio.Event) -> None:
    from faststream.kafka import KafkaBroker
    from faststream.kafka.annotations import KafkaMessage

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongo, tz_aware=True)
    db = client[args.db]
    broker = KafkaBroker(args.bootstrap)

    @broker.subscriber(args.topic_in, group_id=args.group, auto_offset_reset="earliest")
    async def handle(body: Any, msg: KafkaMessage) -> None:
        record = msg.raw_message
        mid = _message_id(record.headers)  # type: ignore[union-attr]
        key = (record.key or b"").decode()  # type: ignore[union-attr]
        await db.inbox.insert_one({"_id": mid, "at": datetime.now(UTC)})
        state = await db.state.find_one({"_id": key})
        await db.state.update_one({"_id": key}, {"$set": {"n": (state or {}).get("n", 0) + 1,
                                                          "last": mid}}, upsert=True)
        await db.outbox.insert_one({"_id": mid, "key": key, "value": _out(mid),
                                    "status": "pending"})
        await broker.publish(_out(mid), args.topic_out, key=key.encode())
        await db.outbox.update_one({"_id": mid}, {"$set": {"status": "published"}})

    await broker.start()
    try:
        await stop.wait()
    finally:
        await broker.stop()
        await client.close()


async def amain(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await (run_raw if args.kind == "raw" else run_naive)(args, stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["raw", "naive"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--mongo", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--topic-in", required=True)
    parser.add_argument("--topic-out", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-records", type=int, default=2000)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
