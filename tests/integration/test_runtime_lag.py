"""Consumer-group lag as the clock-driven jobs see it (``services.runtime.broker.group_lag``),
against the real broker: every partition counts, whichever instance owns it; a partition the
group never committed counts from its first record; commits bring it down to zero."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from services.runtime.broker import group_lag
from services.runtime.kafka_security import KafkaConnection
from tests.support import uid

pytestmark = pytest.mark.integration


async def test_group_lag_counts_uncommitted_records_over_all_partitions(bootstrap: str) -> None:
    topic, group = uid("lag-topic"), uid("lag-group")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False)
    await producer.start()
    try:
        for partition, count in ((0, 5), (1, 3), (2, 0)):
            for n in range(count):
                await producer.send_and_wait(topic, f"{n}".encode(), partition=partition)
    finally:
        await producer.stop()

    # never committed: from the start
    assert await group_lag(KafkaConnection(bootstrap), group, topic) == 8

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    try:
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, ""),
                               TopicPartition(topic, 1): OffsetAndMetadata(3, "")})
        assert await group_lag(KafkaConnection(bootstrap), group, topic) == 1
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "")})
        assert await group_lag(KafkaConnection(bootstrap), group, topic) == 0
    finally:
        await consumer.stop()
    assert await group_lag(KafkaConnection(bootstrap), group, uid("no-such-topic")) == 0
