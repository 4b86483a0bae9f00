"""The operator never sees a secret: passwords, codes and tokens are shown as *** in tail lines
and JSON, in undecodable values, in dead letters written before they were masked and in
replies; a dead letter whose secrets were masked is not replayed — Kafka faked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.auth import Login, SessionTokens
from contracts.envelope import Envelope, encode
from contracts.notify import OneTimeCodeRequested
from services.cli import kafka, render
from tests.unit.cli.conftest import agen, raw_of

pytestmark = pytest.mark.unit

PASSWORD = "otter-paddles-7731"
TOTP = "492039"
CODE = "583920"
AT = datetime(2026, 9, 1, 5, 12, 30, tzinfo=UTC)
LOGIN = Login(request_id="req-1", login="+79121234567", password=PASSWORD, totp=TOTP)
OTP = OneTimeCodeRequested(request_id="req-2", phone="+79121234567", code=CODE,
                           purpose="registration", expires_at=AT)
COMMANDS = "auth.commands.v1"
DLQ = "auth.dead-letter.v1"
DLQ_HEADERS = {"dlq_code": "reply_topic_not_allowed", "dlq_reason": "not a reply topic",
               "dlq_source_topic": COMMANDS, "dlq_source_partition": "0",
               "dlq_source_offset": "3", "dlq_consumer_group": "schoolcard-auth",
               "dlq_failed_at": "2026-09-01T05:13:00+00:00", "dlq_attempts": "0"}


def _secret_free(text: str) -> None:
    for secret in (PASSWORD, TOTP, CODE):
        assert secret not in text


def test_decoded_payloads_show_their_secrets_masked_and_the_rest_as_is():
    decoded = render.decode_record(raw_of(LOGIN, topic=COMMANDS, key="+79121234567"))
    assert decoded.message == LOGIN
    as_json = render.record_json(decoded)
    assert as_json["payload"]["password"] == "***" and as_json["payload"]["totp"] == "***"
    assert as_json["payload"]["login"] == "+79121234567"
    line = render.record_line(decoded).plain
    assert "password=***" in line and "login=+79121234567" in line
    _secret_free(json.dumps(as_json) + line)


def test_a_reply_with_tokens_is_summarised_without_them():
    tokens = SessionTokens(request_id="req-3", access_token="eyJhbGciOiJFZERTQSJ9.e30.c2ln",
                           refresh_token="rt-4f9d2c7a1e8b6d3f", expires_in_s=300)
    text = render.summarize(tokens)
    assert "access_token=***" in text and "refresh_token=***" in text
    assert "eyJhbGciOiJFZERTQSJ9" not in text and "rt-4f9d2c7a1e8b6d3f" not in text
    assert "expires_in_s=300" in text


def test_an_undecodable_record_shows_its_value_with_the_secrets_of_its_type_masked():
    headers = Envelope.new(LOGIN, source="app:test").to_headers()
    value = json.dumps({**json.loads(encode(LOGIN)), "request_id": "no spaces!"}).encode()
    broken = kafka.Raw(COMMANDS, 0, 9, None, "k", value, headers)
    decoded = render.decode_record(broken)
    assert decoded.message is None and decoded.problem
    as_json = render.record_json(decoded)
    assert json.loads(as_json["value"])["password"] == "***"
    _secret_free(as_json["value"] + render.record_line(decoded).plain)
    not_json = kafka.Raw(COMMANDS, 0, 10, None, "k", b"\xff not json", headers)
    assert render.record_json(render.decode_record(not_json))["value"].endswith("not json")


def test_a_dead_letter_written_with_its_secrets_is_listed_without_them(cli, monkeypatch):
    old = raw_of(OTP, topic=DLQ, key="+79121234567", extra=DLQ_HEADERS)

    async def read_all(bootstrap: str, topic: str) -> list[kafka.Raw]:
        return [old]

    monkeypatch.setattr(kafka, "read_all", read_all)
    result = cli("--json", "dlq", "list", "auth")
    assert result.exit_code == 0, result.output
    [listed] = [json.loads(line) for line in result.stdout.splitlines()]
    assert json.loads(listed["value"])["code"] == "***"
    assert json.loads(listed["value"])["phone"] == "+79121234567"
    _secret_free(result.stdout)


def test_tail_of_a_topic_carrying_codes_prints_no_code(cli, monkeypatch):
    def read(bootstrap: str, topic: str, **kw: Any) -> Any:
        return agen([raw_of(OTP, topic="notify.otp-requests.v1", key="+79121234567")])

    monkeypatch.setattr(kafka, "read", read)
    for args in (("tail",), ("--json", "tail")):
        result = cli(*args, "notify.otp-requests.v1", "--no-follow")
        assert result.exit_code == 0, result.output
        assert "***" in result.stdout
        _secret_free(result.stdout)


def test_a_dead_letter_whose_secrets_were_masked_is_not_replayed(cli, monkeypatch):
    masked = kafka.Raw(DLQ, 0, 4, 1_788_000_000_000, "+79121234567",
                       b'{"request_id":"req-1","login":"+79121234567","password":"***"}',
                       {**Envelope.new(LOGIN, source="app:test").to_headers(),
                        **DLQ_HEADERS, "dlq_masked": "password"})
    with pytest.raises(kafka.KafkaProblem, match="secrets masked"):
        kafka.replay_item(masked)
    clear = raw_of(OTP, topic=DLQ, key="+79121234567", offset=5,
                   extra={**DLQ_HEADERS, "dlq_source_topic": "notify.otp-requests.v1"})
    published: list[Any] = []

    async def read_all(bootstrap: str, topic: str) -> list[kafka.Raw]:
        return [masked, clear]

    async def require_topic(bootstrap: str, topic: str, hint: str = "") -> None:
        return None

    async def publish_raw(bootstrap: str, items: Any) -> list[kafka.Sent]:
        items = list(items)
        published.extend(items)
        return [kafka.Sent(t, 0, 7, k, h) for t, k, _v, h, _p in items]

    monkeypatch.setattr(kafka, "read_all", read_all)
    monkeypatch.setattr(kafka, "require_topic", require_topic)
    monkeypatch.setattr(kafka, "publish_raw", publish_raw)
    result = cli("dlq", "replay", "auth", "--offset", "4")
    assert result.exit_code == 1 and "secrets masked" in result.stderr and published == []
    result = cli("dlq", "replay", "auth", "--all")
    assert result.exit_code == 0, result.output
    assert "skipped 1 dead letter(s) whose secrets were masked" in result.stderr
    assert [item[0] for item in published] == ["notify.otp-requests.v1"]
