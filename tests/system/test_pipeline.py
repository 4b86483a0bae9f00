"""The runtime's promises, checked with the service as its own process against the real broker
and the real MongoDB-protocol server."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest

from contracts.catalog import DLQ_CODE, DLQ_OFFSET, DLQ_REASON, DLQ_TOPIC
from contracts.envelope import Envelope
from contracts.integrations import CardIssued
from tests.support import Integrator, TopicReader, chip_uid, uid

pytestmark = pytest.mark.system

CARDS = "integrations.card-issuance.v1"


def card(contract: str | None = None) -> CardIssued:
    return CardIssued(
        contract=contract or f"{random.randrange(10**7, 10**8)}",
        card_uid=chip_uid(),
        school_id="izh-school-42", school_tz="Europe/Samara", student_id=uid("stu"),
        class_name="5Б", birth_date=date(2014, 3, 8), issued_at=datetime.now(UTC))


async def test_an_integrator_message_is_handled_and_its_result_is_on_the_output_topic_and_in_mongo(
        start_service, bootstrap, mongo):
    start_service("access")
    issued = card()
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow_list:
        env = await integrator.publish(issued, issued.contract)
        [entry] = await allow_list.wait_for(lambda r: r.key == issued.card_uid)
    assert entry.json()["allowed"] is True
    assert entry.headers["ce_causationid"] == env.id
    assert entry.headers["ce_correlationid"] == env.correlation_id
    doc = mongo.schoolcard_access.access_cards.find_one({"_id": issued.card_uid})
    assert doc["contract"] == issued.contract


async def test_malformed_and_schema_invalid_messages_are_dead_lettered_and_the_next_is_processed(
        start_service, bootstrap, mongo):
    start_service("access")
    good = card()
    invalid = card().model_copy(update={"contract": "123"})  # 3 digits: violates the schema
    key = uid("k")
    async with Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "access.dead-letter.v1") as dlq, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow_list:
        headers = Envelope.new(good, source="integrator:test").to_headers()
        await integrator.publish_raw(CARDS, b"\x00not json{", key, headers)
        bad_headers = Envelope.new(invalid, source="integrator:test").to_headers()
        await integrator.publish_raw(CARDS, invalid.model_dump_json().encode(), key, bad_headers)
        await integrator.publish_raw(CARDS, b"{}", key, {"ce_type": "x"})  # no envelope
        await integrator.publish(good, key)
        dead = await dlq.wait_for(lambda r: r.key == key, count=3)
        await allow_list.wait_for(lambda r: r.key == good.card_uid)
    codes = sorted(r.headers[DLQ_CODE] for r in dead)
    assert codes == ["missing_headers", "not_json", "schema_violation"]
    not_json = next(r for r in dead if r.headers[DLQ_CODE] == "not_json")
    assert not_json.value == b"\x00not json{"  # the original bytes, untouched
    assert not_json.headers[DLQ_TOPIC] == CARDS
    assert int(not_json.headers[DLQ_OFFSET]) >= 0
    violation = next(r for r in dead if r.headers[DLQ_CODE] == "schema_violation")
    assert "contract" in violation.headers[DLQ_REASON]
