"""The wire vocabulary: snapshots make every schema change visible in review, every field is
documented, every message type has a topic, and the AsyncAPI document is current."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from contracts import asyncapi, catalog
from contracts.envelope import (
    ContractError,
    Envelope,
    Part,
    decode,
    encode,
    registered_types,
)
from contracts.integrations import CanteenSaleRequested, TopUpReceived
from contracts.types import CardUid

pytestmark = pytest.mark.unit

SNAPSHOTS = Path(__file__).parent / "schemas"
ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted(registered_types().items())


def _parts() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    for sub in Part.__subclasses__():
        seen.append(sub)
        seen.extend(sub.__subclasses__())
    return seen


@pytest.mark.parametrize(("name", "model"), MODELS, ids=[n for n, _ in MODELS])
def test_the_json_schema_of_every_contract_matches_its_snapshot(name, model):
    schema = json.dumps(model.model_json_schema(), indent=2, sort_keys=True,
                        ensure_ascii=False) + "\n"
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(schema)
    assert path.read_text() == schema, f"{name} changed: run UPDATE_SNAPSHOTS=1 and review"


def test_no_snapshot_is_left_for_a_contract_that_no_longer_exists():
    names = {f"{n}.json" for n, _ in MODELS}
    assert {p.name for p in SNAPSHOTS.glob("*.json")} <= names


@pytest.mark.parametrize("model", [m for _, m in MODELS] + _parts(),
                         ids=[n for n, _ in MODELS] + [p.__name__ for p in _parts()])
def test_every_field_is_documented(model):
    undocumented = [name for name, f in model.model_fields.items()
                    if not (f.description or _type_documented(f))]
    assert undocumented == []


def _type_documented(field) -> bool:  # type: ignore[no-untyped-def]
    for meta in field.metadata:
        if getattr(meta, "description", None):
            return True
    annotation = field.annotation
    args = getattr(annotation, "__args__", ())
    candidates = [annotation, *args]
    return any(isinstance(c, type) and issubclass(c, BaseModel | Part) and c.__doc__
               for c in candidates) or any(
        isinstance(c, type) and c.__doc__ and c.__module__.startswith("contracts")
        for c in candidates)


def test_every_message_type_travels_on_a_topic_and_every_topic_type_is_registered():
    on_topics = {m.TYPE for t in catalog.TOPICS for m in t.messages}
    assert set(registered_types()) - on_topics == set()
    assert on_topics <= set(registered_types())


def test_topic_names_follow_owner_name_version():
    for t in catalog.TOPICS:
        owner, _, version = t.name.split(".")
        assert version == "v1"
        assert owner in {*catalog.SERVICES, "integrations", "apps"}


def test_the_committed_asyncapi_document_is_current():
    committed = (ROOT / "docs" / "asyncapi.json").read_text()
    assert committed == asyncapi.render(), "docs/asyncapi.json is stale: run `make docs`"


def test_the_asyncapi_document_lists_every_topic_with_its_payload_schemas():
    doc = asyncapi.build()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.name for t in catalog.TOPICS}
    for t in catalog.TOPICS:
        for m in t.messages:
            assert m.__name__ in doc["components"]["schemas"]


def test_the_asyncapi_document_says_which_messages_must_be_signed_by_whom_and_how():
    doc = asyncapi.build()
    messages = doc["components"]["messages"]
    signed = {m.__name__: t.producer for t in catalog.TOPICS for m in t.signed}
    assert set(signed) == {"TopUpReceived", "AutoTopUpCollectionFailed", "CardIssued",
                           "CardReissued", "VirtualCardIssued"}
    assert messages["AutoTopUpCollectionFailed"]["x-signed-by"] == "integrator:payments"
    for name, message in messages.items():
        assert message.get("x-signed-by") == signed.get(name), name
        assert message["headers"] == {"$ref": "#/components/schemas/" + (
            "SignedEnvelopeHeaders" if name in signed else "EnvelopeHeaders")} or \
            name == "DeadLetter"
    headers = doc["components"]["schemas"]["SignedEnvelopeHeaders"]
    assert headers["allOf"][1]["required"] == ["schoolcard-signer", "schoolcard-signature"]
    assert "Ed25519" in headers["description"] and "unauthenticated" in headers["description"]


def test_the_asyncapi_document_binds_keys_replies_correlation_and_security():
    doc = asyncapi.build()
    messages = doc["components"]["messages"]
    for t in catalog.TOPICS:
        for m in t.messages:
            key = messages[m.__name__]["bindings"]["kafka"]["key"]
            assert key["type"] == "string" and t.key in key["description"], m.__name__
            has_correlation = "correlationId" in messages[m.__name__]
            assert has_correlation == (m.KIND in ("command", "query", "reply")), m.__name__
    location = doc["components"]["correlationIds"]["correlationId"]["location"]
    assert location == "$message.header#/ce_correlationid"
    requests = {f"{c}_receives_{t.name.replace('.', '_').replace('-', '_')}"
                for t in catalog.TOPICS for c in t.consumers if c in catalog.SERVICES
                and any(m.KIND in ("command", "query") for m in t.messages)}
    assert requests >= {"wallet_receives_wallet_commands_v1", "auth_receives_auth_commands_v1"}
    for op_id, op in doc["operations"].items():
        reply = op.get("reply")
        assert (reply is not None) == (op_id in requests), op_id
        if reply:
            assert reply["address"]["location"] == "$message.header#/ce_replyto"
            assert reply["channel"] == {"$ref": "#/channels/apps_replies_v1"}
    production = doc["servers"]["production"]
    assert production["protocol"] == "kafka-secure"
    schemes = doc["components"]["securitySchemes"]
    for ref in production["security"]:
        assert ref["$ref"].rsplit("/", 1)[-1] in schemes
    assert schemes["scramSha512"]["type"] == "scramSha512"


def test_an_envelope_survives_the_trip_through_kafka_headers():
    msg = TopUpReceived(payment_id="p-1", contract="40012345", amount=50_000, channel="atm",
                        paid_at=datetime(2026, 9, 1, 8, 0, tzinfo=UTC))
    env = Envelope.new(msg, source="integrator:bank", subject="40012345", reply_to="r.v1")
    back = Envelope.from_headers(env.to_headers())
    assert back == env
    assert decode(back, encode(msg)) == msg


@pytest.mark.parametrize(("value", "code"), [
    (b"{not json", "not_json"),
    (b'{"payment_id": "p-1"}', "schema_violation"),
    (None, "not_json"),
    (b'{"payment_id": "p-1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not_json"),
])
def test_undecodable_payloads_raise_a_contract_error_with_a_code(value, code):
    env = Envelope.new(TopUpReceived.model_construct(), source="x")
    with pytest.raises(ContractError) as err:
        decode(env, value)
    assert err.value.code == code


def test_a_message_type_foreign_to_the_topic_is_refused():
    env = Envelope.new(TopUpReceived.model_construct(), source="x")
    with pytest.raises(ContractError) as err:
        decode(env, b"{}", allowed={"schoolcard.wallet.TopUpApplied"})
    assert err.value.code == "unexpected_type"


def test_naive_datetimes_and_floats_for_money_are_rejected():
    base = {"payment_id": "p-1", "contract": "40012345", "channel": "atm"}
    with pytest.raises(ValidationError):
        TopUpReceived(**base, amount=100, paid_at=datetime(2026, 9, 1, 8, 0))
    with pytest.raises(ValidationError):
        TopUpReceived(**base, amount=100.5, paid_at=datetime(2026, 9, 1, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_instant_that_is_out_of_range_in_utc_is_a_schema_violation(instant):
    payload = {"payment_id": "p-1", "contract": "40012345", "amount": 100, "channel": "atm",
               "paid_at": instant}
    with pytest.raises(ValidationError):
        TopUpReceived.model_validate_json(json.dumps(payload))
    envelope = Envelope.new(TopUpReceived.model_construct(), source="integrator:bank")
    with pytest.raises(ContractError) as refused:
        decode(envelope, json.dumps(payload).encode())
    assert refused.value.code == "schema_violation"


@pytest.mark.parametrize("contract", ["٤٠٠١٢٣٤٥", "４００１２３４５", "4001234५"])
def test_a_contract_number_is_eight_ascii_digits_not_digits_of_another_script(contract):
    with pytest.raises(ValidationError, match="digits other than 0-9"):
        TopUpReceived(payment_id="p-1", contract=contract, amount=100, channel="atm",
                      paid_at=datetime(2026, 9, 1, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize("zone", ["A", "Mars/Base", "Europe", "Europe/Samara/x"])
def test_a_school_time_zone_must_be_one_of_the_iana_database(zone):
    from contracts.integrations import CardIssued

    card = {"contract": "40012345", "card_uid": "04A2B3C4D5E6F7", "school_id": "izh-42",
            "school_tz": "Europe/Samara", "student_id": "stu-1", "class_name": "5Б",
            "birth_date": "2014-03-08", "issued_at": "2026-09-01T05:00:00Z"}
    assert CardIssued.model_validate(card).school_tz == "Europe/Samara"
    with pytest.raises(ValidationError, match="not a time zone of the IANA database"):
        CardIssued.model_validate({**card, "school_tz": zone})


def test_a_sale_whose_total_exceeds_the_largest_amount_is_a_schema_violation():
    from contracts.money import MAX_AMOUNT

    line = {"sku": "x", "name": "Обед", "category": "hot_meal", "unit_price": MAX_AMOUNT}
    sale = {"sale_id": "s-1", "terminal_id": "till-1", "school_id": "izh-42",
            "card_uid": "04A2B3C4D5E6F7", "sold_at": "2026-09-01T05:00:00Z"}
    assert CanteenSaleRequested.model_validate({**sale, "items": [{**line, "qty": 1}]})
    envelope = Envelope.new(CanteenSaleRequested.model_construct(), source="integrator:till")
    for items in ([{**line, "qty": 2}], [{**line, "qty": 1}, {**line, "unit_price": 1, "qty": 1}]):
        with pytest.raises(ContractError, match="total exceeds") as refused:
            decode(envelope, json.dumps({**sale, "items": items}).encode())
        assert refused.value.code == "schema_violation"


def test_phones_are_normalised_to_e164_and_garbage_is_refused():
    from contracts.auth import RequestPasswordReset

    assert RequestPasswordReset(request_id="r1", phone="8 912 123-45-67").phone == "+79121234567"
    with pytest.raises(ValidationError):
        RequestPasswordReset(request_id="r1", phone="12345")


def test_secrets_are_masked_in_repr_but_travel_in_the_payload():
    from contracts.auth import Login

    login = Login(request_id="r1", login="+79121234567", password="blue-river-42")
    assert "blue-river-42" not in repr(login)
    assert "blue-river-42" not in str(login)
    assert json.loads(encode(login))["password"] == "blue-river-42"


@pytest.mark.parametrize("pan", ["4111111111111111", "5555555555554444", "4012888888881881",
                                 "4222222222222", "378282246310005", "6304000000000000000"])
def test_a_card_uid_shaped_like_a_bank_card_number_is_refused_without_repeating_it(pan):
    sale = CanteenSaleRequested(
        sale_id="till-7-000981", terminal_id="izh-42-till-1", school_id="izh-school-42",
        card_uid="04A2B3C4D5E6F7", items=[{"sku": "soup", "name": "Суп", "category": "soup",
                                           "qty": 1, "unit_price": 50_00}],
        sold_at=datetime(2026, 9, 1, 5, tzinfo=UTC))
    with pytest.raises(ValidationError, match="bank card number"):
        CanteenSaleRequested.model_validate({**sale.model_dump(mode="json"), "card_uid": pan})
    payload = encode(sale).replace(b"04A2B3C4D5E6F7", pan.encode())
    with pytest.raises(ContractError) as error:
        decode(Envelope.new(sale, source="integrator:test"), payload)
    assert error.value.code == "schema_violation"
    assert "bank card number" in error.value.reason and pan not in error.value.reason


@pytest.mark.parametrize("uid", ["04A2B3C4D5E6F7", "4111111111111112", "411111111111",
                                 "12345678901234567890", "04112233445566"])
def test_chip_uids_and_digit_strings_that_are_no_pan_are_card_uids(uid):
    from pydantic import TypeAdapter

    assert TypeAdapter(CardUid).validate_python(uid) == uid


@pytest.mark.parametrize("amount", ["100", 100.0, 100.5, True, -100, 0])
def test_an_amount_that_is_not_a_positive_json_integer_of_kopecks_is_refused_not_coerced(
        amount: object) -> None:
    payload = {"payment_id": "p-1", "contract": "40012345", "amount": amount, "channel": "atm",
               "paid_at": "2026-09-01T05:00:00Z", "time": "2026-09-01T05:00:00Z",
               "source": "integrator:bank", "correlation_id": "c-1"}
    envelope = Envelope.new(TopUpReceived.model_validate({**payload, "amount": 100}),
                            source="integrator:bank")
    with pytest.raises(ContractError) as refused:
        decode(envelope, json.dumps(payload).encode())
    assert refused.value.code == "schema_violation"


@pytest.mark.parametrize("name, allowed", [
    ("apps.replies.v1", True), ("apps.replies.cabinet-7.v1", True),
    ("apps.replies.gateway-eu-1.v1", True), ("no such topic!", False), ("x" * 300, False),
    ("wallet.sale-decisions.v1", False), ("apps.replies.-x.v1", False),
    ("apps.replies.UPPER.v1", False), ("apps.replies.a.v2", False),
])
def test_replies_go_only_to_the_shared_reply_topic_or_a_client_reply_topic(
        name: str, allowed: bool) -> None:
    assert (catalog.reply_topic_problem(name) is None) is allowed
