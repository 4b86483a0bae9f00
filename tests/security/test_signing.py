"""The signing helper (contracts/signing.py), the key table setting and the consumer's check,
without a broker: what is signed, what verifies, and why everything else is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from contracts import catalog
from contracts.envelope import Envelope, encode
from contracts.integrations import CardIssued, GateTapped, TopUpReceived
from contracts.signing import (
    HEADER_SIGNATURE,
    HEADER_SIGNER,
    KeyTable,
    Signers,
    SigningError,
    SigningKey,
    Unauthenticated,
    generate_key_pair,
    integrator_of,
    load_public_key,
    signing_input,
)
from services.cli.config import ConfigError, resolve_signers
from services.runtime.consumer import Consumer, Inbound
from services.runtime.settings import InfraSettings

pytestmark = pytest.mark.unit

TOPUPS = "integrations.topups.v1"
PAYMENT = TopUpReceived(payment_id="sbp-1", contract="40012345", amount=150_00,
                        channel="bank_card", paid_at=datetime(2026, 9, 1, tzinfo=UTC))


def pair(kid: str) -> tuple[SigningKey, str]:
    private, public = generate_key_pair()
    return SigningKey.from_pem(kid, private), public


PAYMENTS, PAYMENTS_PUB = pair("integrator:payments")
TURNSTILE, TURNSTILE_PUB = pair("integrator:turnstile")
ISSUER, ISSUER_PUB = pair("integrator:card-issuer")
TABLE = KeyTable.parse({"integrator:payments": PAYMENTS_PUB,
                        "integrator:turnstile": TURNSTILE_PUB,
                        "integrator:card-issuer": ISSUER_PUB})


def signed_headers(key: SigningKey = PAYMENTS, message: Any = PAYMENT,
                   topic: str = TOPUPS) -> tuple[dict[str, str], bytes]:
    env = Envelope.new(message, source="integrator:payments")
    value = encode(message)
    return {**env.to_headers(), **key.headers(topic, env.type, env.id, value)}, value


# --- the catalog ---------------------------------------------------------------------------

def test_the_catalog_names_who_signs_money_and_card_identity_and_nothing_else():
    assert catalog.required_signer(TOPUPS, TopUpReceived.TYPE) == "integrator:payments"
    for kind in ("CardIssued", "CardReissued"):
        assert catalog.required_signer("integrations.card-issuance.v1",
                                       f"schoolcard.integrations.{kind}") \
            == "integrator:card-issuer"
    assert catalog.required_signer(TOPUPS, "schoolcard.integrations.AutoTopUpCollectionFailed") \
        == "integrator:payments"  # it re-arms auto top-up: money state
    assert catalog.required_signer("integrations.gate-taps.v1", GateTapped.TYPE) is None
    assert catalog.required_signer("wallet.events.v1", TopUpReceived.TYPE) is None
    assert catalog.signing_integrators() == ("integrator:card-issuer", "integrator:payments")


# --- signing and verifying -------------------------------------------------------------------

def test_a_signed_record_verifies_with_the_integrators_key():
    headers, value = signed_headers()
    assert headers[HEADER_SIGNER] == "integrator:payments"
    assert len(base64.b64decode(headers[HEADER_SIGNATURE])) == 64
    assert TABLE.verify("integrator:payments", TOPUPS, headers, value) == "integrator:payments"


def test_the_signature_covers_topic_type_id_and_every_byte_of_the_value():
    headers, value = signed_headers()
    changed = [
        ("integrator:payments", TOPUPS, {**headers, "ce_id": "another-id"}, value),
        ("integrator:payments", TOPUPS,
         {**headers, "ce_type": "schoolcard.integrations.AutoTopUpCollectionFailed"}, value),
        ("integrator:payments", "integrations.topups.v2", headers, value),
        ("integrator:payments", TOPUPS, headers, value.replace(b"15000", b"95000")),
        ("integrator:payments", TOPUPS, headers, value + b" "),
    ]
    for signer, topic, h, v in changed:
        with pytest.raises(Unauthenticated, match="does not match"):
            TABLE.verify(signer, topic, h, v)


@pytest.mark.parametrize(("change", "reason"), [
    ({HEADER_SIGNER: None, HEADER_SIGNATURE: None}, "unsigned: no schoolcard-signer and no "
                                                    "schoolcard-signature header"),
    ({HEADER_SIGNATURE: None}, "no schoolcard-signature header"),
    ({HEADER_SIGNATURE: "***"}, "not base64"),
    ({HEADER_SIGNATURE: base64.b64encode(b"short").decode()}, "5 bytes"),
    ({HEADER_SIGNER: "integrator:turnstile"}, "only integrator:payments may publish"),
    ({HEADER_SIGNER: "integrator:payments#next"}, "unknown key 'integrator:payments#next'"),
])
def test_missing_malformed_foreign_and_unknown_signatures_are_unauthenticated(change, reason):
    headers, value = signed_headers()
    for name, v in change.items():
        if v is None:
            headers.pop(name)
        else:
            headers[name] = v
    with pytest.raises(Unauthenticated) as refused:
        TABLE.verify("integrator:payments", TOPUPS, headers, value)
    assert reason in refused.value.reason


def test_another_integrators_genuine_signature_does_not_make_it_the_payment_integrator():
    headers, value = signed_headers(TURNSTILE)
    with pytest.raises(Unauthenticated, match="only integrator:payments may publish"):
        TABLE.verify("integrator:payments", TOPUPS, headers, value)


def test_an_empty_key_table_refuses_everything():
    headers, value = signed_headers()
    with pytest.raises(Unauthenticated, match="unknown key"):
        KeyTable().verify("integrator:payments", TOPUPS, headers, value)


def test_keys_rotate_by_key_id_both_keys_valid_while_both_are_listed():
    old, old_pub = pair("integrator:payments#2026-08")
    new, new_pub = pair("integrator:payments#2026-09")
    table = KeyTable.parse({old.kid: old_pub, new.kid: new_pub})
    assert table.integrators == {"integrator:payments"}
    for key in (old, new):
        headers, value = signed_headers(key)
        assert table.verify("integrator:payments", TOPUPS, headers, value) == key.kid
    headers, value = signed_headers(old)
    with pytest.raises(Unauthenticated, match="unknown key"):
        KeyTable.parse({new.kid: new_pub}).verify("integrator:payments", TOPUPS, headers, value)


def test_a_key_signed_as_another_kid_of_the_same_integrator_does_not_verify():
    stolen_name = SigningKey(PAYMENTS.kid + "#x", TURNSTILE.private)
    table = KeyTable.parse({stolen_name.kid: PAYMENTS_PUB})
    headers, value = signed_headers(stolen_name)
    with pytest.raises(Unauthenticated, match="does not match"):
        table.verify("integrator:payments", TOPUPS, headers, value)


def test_the_signed_input_is_unambiguous():
    assert signing_input("t", "ty", "id", b"v") == b"schoolcard-signature-v1\nt\nty\nid\nv"
    for bad in ({"message_id": "a\nb"}, {"message_id": ""}, {"topic": "x\n"}):
        args = {"topic": "t", "type_name": "ty", "message_id": "id", "value": b"v", **bad}
        with pytest.raises(SigningError):
            signing_input(**args)  # type: ignore[arg-type]
    headers, value = signed_headers()
    with pytest.raises(Unauthenticated, match="does not match"):
        TABLE.verify("integrator:payments", TOPUPS, {**headers, "ce_id": "x\ny"}, value)


def test_signers_sign_only_the_types_that_need_it_and_refuse_without_the_key():
    signers = Signers([PAYMENTS])
    headers, value = Envelope.new(PAYMENT, source="x").to_headers(), encode(PAYMENT)
    signed = signers.headers(TOPUPS, headers, value)
    assert TABLE.verify("integrator:payments", TOPUPS, {**headers, **signed}, value)
    tap = GateTapped(tap_id="t1", gate_id="g1", school_id="s1", card_uid="04A2B3C4D5E6F7",
                     direction="in", tapped_at=datetime(2026, 9, 1, tzinfo=UTC))
    assert signers.headers("integrations.gate-taps.v1", Envelope.new(tap, source="x")
                           .to_headers(), encode(tap)) == {}
    card = CardIssued(contract="40012345", card_uid="04A2B3C4D5E6F7", school_id="izh-42",
                      school_tz="Europe/Samara", student_id="stu-1", class_name="1А",
                      birth_date=date(2015, 1, 1), issued_at=datetime(2026, 9, 1, tzinfo=UTC))
    with pytest.raises(SigningError, match="must be signed by integrator:card-issuer"):
        signers.headers("integrations.card-issuance.v1",
                        Envelope.new(card, source="x").to_headers(), encode(card))


# --- keys and the setting ----------------------------------------------------------------------

def test_public_keys_are_read_from_pem_or_raw_base64_and_anything_else_is_refused():
    key = Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert load_public_key(base64.b64encode(raw).decode()).public_bytes_raw() == raw
    assert load_public_key(PAYMENTS_PUB).public_bytes_raw() == \
        PAYMENTS.private.public_key().public_bytes_raw()
    for bad, why in (("abc", "neither a PEM nor base64"),
                     (base64.b64encode(b"x" * 31).decode(), "32 bytes, not 31")):
        with pytest.raises(ValueError, match=why):
            load_public_key(bad)
    with pytest.raises(ValueError, match="must name an integrator"):
        KeyTable.parse({"wallet": PAYMENTS_PUB})
    assert integrator_of("integrator:payments#2026-09") == "integrator:payments"


def test_the_setting_takes_json_and_a_file_and_refuses_bad_keys_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SCHOOLCARD_INTEGRATOR_KEYS", json.dumps({PAYMENTS.kid: PAYMENTS_PUB}))
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({ISSUER.kid: ISSUER_PUB}))
    monkeypatch.setenv("SCHOOLCARD_INTEGRATOR_KEYS_FILE", str(keys_file))
    infra = InfraSettings(kafka_bootstrap="k:9092", mongo_uri="mongodb://m")
    assert infra.integrator_key_table.integrators == {"integrator:payments",
                                                      "integrator:card-issuer"}
    keys_file.write_text(json.dumps({PAYMENTS.kid: PAYMENTS_PUB}))
    with pytest.raises(ValidationError, match="key ids in both"):
        InfraSettings(kafka_bootstrap="k:9092", mongo_uri="mongodb://m")
    monkeypatch.delenv("SCHOOLCARD_INTEGRATOR_KEYS_FILE")
    monkeypatch.setenv("SCHOOLCARD_INTEGRATOR_KEYS", json.dumps({PAYMENTS.kid: "not a key!"}))
    with pytest.raises(ValidationError, match="'integrator:payments': neither a PEM"):
        InfraSettings(kafka_bootstrap="k:9092", mongo_uri="mongodb://m")
    monkeypatch.delenv("SCHOOLCARD_INTEGRATOR_KEYS")
    assert InfraSettings(kafka_bootstrap="k:9092",
                         mongo_uri="mongodb://m").integrator_key_table.integrators == set()


# --- the consumer, before any handler ---------------------------------------------------------

class Recording(Consumer):
    def __init__(self, handler: Any, keys: KeyTable = TABLE, kind: Any = TopUpReceived,
                 service: str = "wallet", **kw: Any) -> None:
        super().__init__(KafkaBroker(), service, {kind: handler}, group_id="g",
                         integrator_keys=keys, **kw)
        self.dead: list[tuple[str, str]] = []

    async def dead_letter(self, record: Any, code: str, reason: str, *, attempts: int) -> None:
        self.dead.append((code, reason))


def record(headers: dict[str, str], value: bytes, offset: int = 0,
           topic: str = TOPUPS) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, 0, 0, b"40012345", value, None, 0, 0,
                          [(k, v.encode()) for k, v in headers.items()])


async def test_the_consumer_dead_letters_a_forged_record_and_hands_the_genuine_one_on():
    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    consumer = Recording(handler)
    forged, value = signed_headers(TURNSTILE)
    genuine, _ = signed_headers()
    unsigned = Envelope.new(PAYMENT, source="integrator:payments").to_headers()
    assert await consumer.process_batch([record(unsigned, value, 0), record(forged, value, 1),
                                         record(genuine, value, 2)]) is True
    assert [m.offset for m in seen] == [2]
    assert [c for c, _ in consumer.dead] == ["unauthenticated", "unauthenticated"]


async def test_a_consumer_without_the_integrators_key_says_so_and_refuses_its_messages():
    async def handler(msg: Inbound) -> None:
        raise AssertionError("must not be called")

    consumer = Recording(handler, keys=KeyTable.parse({TURNSTILE.kid: TURNSTILE_PUB}))
    assert consumer.unverifiable() == {"integrator:payments": ["TopUpReceived"]}
    headers, value = signed_headers()
    assert await consumer.process(record(headers, value)) is True
    assert consumer.dead == [("unauthenticated", "unknown key 'integrator:payments' (not in "
                              "SCHOOLCARD_INTEGRATOR_KEYS)")]


async def test_a_collection_failure_is_handled_only_when_the_payment_integrator_signed_it():
    from contracts.integrations import AutoTopUpCollectionFailed

    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    failed = AutoTopUpCollectionFailed(request_id="auto-1", contract="40012345",
                                       reason="card_declined",
                                       failed_at=datetime(2026, 9, 1, tzinfo=UTC))
    consumer = Recording(handler, kind=AutoTopUpCollectionFailed)
    signed, value = signed_headers(PAYMENTS, failed)
    forged, _ = signed_headers(TURNSTILE, failed)
    unsigned = Envelope.new(failed, source="integrator:payments").to_headers()
    assert await consumer.process_batch([record(signed, value, 0), record(unsigned, value, 1),
                                         record(forged, value, 2)]) is True
    assert [m.offset for m in seen] == [0]
    assert [c for c, _ in consumer.dead] == ["unauthenticated", "unauthenticated"]


async def test_a_signed_message_of_a_type_that_needs_no_signature_is_handled():
    from contracts.integrations import GateTapped

    seen: list[Inbound] = []

    async def handler(msg: Inbound) -> None:
        seen.append(msg)

    tap = GateTapped(tap_id="tap-1", gate_id="izh-42-gate-3", school_id="izh-school-42",
                     card_uid="04A2B3C4D5E6F7", direction="in",
                     tapped_at=datetime(2026, 9, 1, tzinfo=UTC))
    consumer = Recording(handler, kind=GateTapped, service="access")
    taps = "integrations.gate-taps.v1"
    signed, value = signed_headers(TURNSTILE, tap, topic=taps)
    unsigned = Envelope.new(tap, source="integrator:turnstile").to_headers()
    assert await consumer.process_batch([record(signed, value, 0, taps),
                                         record(unsigned, value, 1, taps)]) is True
    assert [m.offset for m in seen] == [0, 1] and consumer.dead == []


# --- the CLI finds the key it signs with --------------------------------------------------------

def test_the_cli_signs_with_the_given_key_or_the_dev_key_and_explains_a_missing_one(
        tmp_path: Path):
    assert resolve_signers("integrations.gate-taps.v1", GateTapped.TYPE, tmp_path, None,
                           None).by_integrator == {}
    with pytest.raises(ConfigError, match="must be signed by integrator:payments: pass "
                                          "--signing-key"):
        resolve_signers(TOPUPS, PAYMENT.TYPE, tmp_path, None, None)
    private, _ = generate_key_pair()
    key_file = tmp_path / "payments.pem"
    key_file.write_text(private)
    signers = resolve_signers(TOPUPS, PAYMENT.TYPE, tmp_path, key_file,
                              "integrator:payments#2026-09")
    assert signers.by_integrator["integrator:payments"].kid == "integrator:payments#2026-09"
    with pytest.raises(ConfigError, match="must be signed by integrator:payments, not by "
                                          "integrator:turnstile"):
        resolve_signers(TOPUPS, PAYMENT.TYPE, tmp_path, key_file, "integrator:turnstile")
