"""A dead letter keeps no secret: auth runs in-process against the real broker and database,
requests carrying a password or a one-time code are dead-lettered (a reply topic that is not
allowed, a schema violation, a type nobody knows), and their copies on auth.dead-letter.v1 hold
*** where the secret was, name the masked fields in dlq_masked and keep everything else; a
value that is not JSON is copied byte for byte."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from contracts import auth as cmd
from contracts.catalog import DLQ_CODE, DLQ_MASKED
from contracts.envelope import Envelope, encode
from tests.support import Integrator, Record, TopicReader, uid

pytestmark = pytest.mark.integration

PROBE = "x-secret-probe"
DLQ = "auth.dead-letter.v1"


@pytest.fixture(scope="module")
async def auth(service_runner, infra, bootstrap) -> AsyncIterator[SimpleNamespace]:
    async with service_runner("auth", private_key=infra["AUTH_PRIVATE_KEY"],
                              pepper=f"pepper-{uid()}"), \
            Integrator(bootstrap, source="app:test") as app, \
            TopicReader(bootstrap, DLQ) as dead:
        yield SimpleNamespace(app=app, dead=dead)


def phone() -> str:
    return f"+7912{random.randrange(10**6, 10**7)}"


async def dead_letter_of(a: SimpleNamespace, probe: str) -> Record:
    # the first record after auth joined its group also waits for the join (Tansu: ~20 s)
    [record] = await a.dead.wait_for(lambda r: r.headers.get(PROBE) == probe, timeout=90)
    return record


def assert_secret_free(record: Record, *secrets: str) -> None:
    text = record.value.decode(errors="replace") + json.dumps(record.headers)
    for secret in secrets:
        assert secret not in text


async def test_a_registration_whose_reply_cannot_be_sent_is_dead_lettered_without_its_password(
        auth: SimpleNamespace) -> None:
    password, probe, number = f"otter {uid('pw')} paddles", uid("probe"), phone()
    message = cmd.StartRegistration(request_id=uid("req"), phone=number, contract="40012345",
                                    password=password, consent=True)
    await auth.app.publish(message, number, reply_to="no such topic!", headers={PROBE: probe})

    record = await dead_letter_of(auth, probe)
    assert record.headers[DLQ_CODE] == "reply_topic_not_allowed"
    assert record.headers[DLQ_MASKED] == "password"
    assert_secret_free(record, password)
    body = record.json()
    assert body["password"] == "***"
    assert (body["request_id"], body["phone"], body["contract"]) == (
        message.request_id, number, "40012345")
    assert "authorization" not in record.headers


async def test_a_code_confirmation_that_breaks_the_schema_is_dead_lettered_without_its_code(
        auth: SimpleNamespace) -> None:
    code, password, probe = f"{random.randrange(10**5, 10**6)}", f"pw {uid()}", uid("probe")
    valid = cmd.ConfirmPasswordReset(request_id=uid("req"), phone=phone(), code=code,
                                     new_password=password)
    value = json.dumps({**json.loads(encode(valid)), "phone": "not a phone"}).encode()
    headers = {**Envelope.new(valid, source="app:test").to_headers(), PROBE: probe}
    await auth.app.publish_raw("auth.commands.v1", value, "k", headers)

    record = await dead_letter_of(auth, probe)
    assert record.headers[DLQ_CODE] == "schema_violation"
    assert set(record.headers[DLQ_MASKED].split(",")) == {"code", "new_password"}
    assert_secret_free(record, code, password)
    assert record.json() == {**json.loads(value), "code": "***", "new_password": "***"}


async def test_a_login_sent_under_a_type_nobody_knows_is_masked_by_its_field_names(
        auth: SimpleNamespace) -> None:
    password, probe = f"heron {uid('pw')} wades", uid("probe")
    login = cmd.Login(request_id=uid("req"), login=phone(), password=password)
    headers = {**Envelope.new(login, source="app:test").to_headers(),
               "ce_type": "schoolcard.auth.LoginV0", PROBE: probe}
    await auth.app.publish_raw("auth.commands.v1", encode(login), "k", headers)

    record = await dead_letter_of(auth, probe)
    assert record.headers[DLQ_CODE] == "unknown_type"
    assert record.headers[DLQ_MASKED] == "password"
    assert_secret_free(record, password)
    assert record.json()["login"] == login.login


async def test_a_value_that_is_not_json_is_dead_lettered_byte_for_byte(
        auth: SimpleNamespace) -> None:
    probe = uid("probe")
    login = cmd.Login(request_id=uid("req"), login=phone(), password="irrelevant")
    value = b"\x00\xff not json at all"
    headers = {**Envelope.new(login, source="app:test").to_headers(), PROBE: probe}
    await auth.app.publish_raw("auth.commands.v1", value, "k", headers)

    record = await dead_letter_of(auth, probe)
    assert record.headers[DLQ_CODE] == "not_json"
    assert record.value == value and DLQ_MASKED not in record.headers
