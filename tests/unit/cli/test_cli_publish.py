"""Options -> contract models: what `schoolcard publish ...` would put on the wire, checked
with --dry-run (no broker), and how invalid input is reported (exit 2, field by field)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from services.cli import kafka

pytestmark = pytest.mark.unit


def dry(cli: Any, *args: str) -> dict[str, Any]:
    result = cli("--json", "publish", *args, "--dry-run")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_top_up_in_roubles_becomes_kopecks_on_the_catalog_topic_keyed_by_contract(cli):
    out = dry(cli, "topup", "-c", "40012345", "--amount", "1 234,50", "--sub-balance",
              "canteen", "--channel", "terminal", "--payment-id", "sbp-000123",
              "--paid-at", "2026-09-01T09:12:30+04:00")
    assert out["topic"] == "integrations.topups.v1"
    assert out["key"] == "40012345"
    assert out["type"] == "schoolcard.integrations.TopUpReceived"
    assert out["payload"] == {
        "payment_id": "sbp-000123", "contract": "40012345", "amount": 123450,
        "sub_balance": "canteen", "channel": "terminal", "auto_top_up_request_id": None,
        "receipt_email": None, "paid_at": "2026-09-01T05:12:30Z"}


def test_top_up_in_kopecks_with_generated_payment_id_and_current_time(cli):
    payload = dry(cli, "topup", "-c", "40012345", "--kopecks", "50000")["payload"]
    assert payload["amount"] == 50000
    assert payload["payment_id"].startswith("cli-pay-")
    assert payload["paid_at"].endswith("Z")


def test_invalid_top_up_is_shown_field_by_field_and_exits_2(cli):
    result = cli("publish", "topup", "-c", "4001234", "--amount", "0", "--dry-run")
    assert result.exit_code == 2
    assert "invalid TopUpReceived" in result.stderr
    assert "contract" in result.stderr and "should match pattern" in result.stderr
    assert "amount" in result.stderr and "greater than 0" in result.stderr


@pytest.mark.parametrize("args, problem", [
    (["--amount", "10", "--kopecks", "1000"], "not both"),
    (["--amount", "12,345"], "more than two digits"),
    ([], "an amount is required"),
])
def test_amount_options_are_checked_before_the_model(cli, args, problem):
    result = cli("publish", "topup", "-c", "40012345", *args, "--dry-run")
    assert result.exit_code == 2
    assert problem in result.stderr


def test_naive_times_are_rejected_not_guessed(cli):
    result = cli("publish", "gate-tap", "--card-uid", "04A2B3C4", "--school-id", "izh-1",
                 "--gate-id", "gate-1", "--tapped-at", "2026-09-01T08:00:00", "--dry-run")
    assert result.exit_code == 2
    assert "tapped_at" in result.stderr and "timezone" in result.stderr


def test_unknown_enum_value_is_a_usage_error(cli):
    result = cli("publish", "validator-tap", "--card-uid", "04A2B3C4", "--validator-id", "v1",
                 "--vehicle-id", "bus-1", "--route", "29", "--stop-id", "s1", "--mode", "boat")
    assert result.exit_code == 2
    assert "boat" in result.output


def test_new_card_needs_a_birth_date_and_uid_is_upper_cased(cli):
    result = cli("publish", "card", "-c", "40012345", "--card-uid", "04a2b3c4d5e6f7",
                 "--school-id", "izh-school-42", "--class", "5Б", "--dry-run")
    assert result.exit_code == 2 and "--birth-date" in result.stderr
    out = dry(cli, "card", "-c", "40012345", "--card-uid", "04a2b3c4d5e6f7", "--school-id",
              "izh-school-42", "--class", "5Б", "--birth-date", "2014-03-08",
              "--birth-date-password")
    assert out["topic"] == "integrations.card-issuance.v1" and out["key"] == "40012345"
    assert out["payload"]["card_uid"] == "04A2B3C4D5E6F7"
    assert out["payload"]["initial_password_is_birth_date"] is True
    assert out["payload"]["school_tz"] == "Europe/Samara"


def test_reissue_publishes_card_reissued_keyed_by_the_old_contract(cli):
    out = dry(cli, "card", "-c", "40099999", "--reissue-of", "40012345", "--card-uid",
              "04A2B3C4D5E6F8", "--school-id", "izh-school-7", "--class", "6А")
    assert out["type"] == "schoolcard.integrations.CardReissued"
    assert out["key"] == "40012345"
    assert out["payload"]["new_contract"] == "40099999"


def test_sale_items_from_colon_specs_and_json(cli):
    out = dry(cli, "sale", "--card-uid", "04a2b3c4", "--school-id", "izh-school-42",
              "--terminal-id", "izh-42-till-1", "--sale-id", "till-7-000981",
              "--item", "bun-cinnamon:Булочка с корицей:bakery:2:35.50:Gluten, milk",
              "--item", '{"sku": "tea", "name": "Чай", "category": "drink", "qty": 1, '
                        '"unit_price": 1500}', "--bonus", "120")
    assert out["topic"] == "integrations.canteen-sales.v1" and out["key"] == "04A2B3C4"
    bun, tea = out["payload"]["items"]
    assert bun == {"sku": "bun-cinnamon", "name": "Булочка с корицей", "category": "bakery",
                   "allergens": ["gluten", "milk"], "qty": 2, "unit_price": 3550}
    assert tea["unit_price"] == 1500 and tea["allergens"] == []
    assert out["payload"]["bonus_to_redeem"] == 120


@pytest.mark.parametrize("item, problem", [
    ("bun:Булочка:bakery:2", "expected SKU:NAME:CATEGORY:QTY:PRICE"),
    ("bun:Булочка:candy:2:10", "items.0.category"),
    ("bun:Булочка:bakery:0:10", "items.0.qty"),
    ("{nope", "not JSON"),
])
def test_bad_sale_lines_are_reported(cli, item, problem):
    result = cli("publish", "sale", "--card-uid", "04A2B3C4", "--school-id", "izh-1",
                 "--terminal-id", "t1", "--item", item, "--dry-run")
    assert result.exit_code == 2
    assert problem in result.stderr


def test_validator_tap_defaults(cli):
    out = dry(cli, "validator-tap", "--card-uid", "04A2B3C4", "--validator-id", "val-1181",
              "--vehicle-id", "bus-2231", "--route", "29", "--stop-id", "stop-central",
              "--offline", "--tap-id", "val-1181-000321")
    assert out["topic"] == "integrations.validator-taps.v1" and out["key"] == "04A2B3C4"
    p = out["payload"]
    assert (p["mode"], p["operator_id"], p["offline"], p["tap_id"]) == (
        "bus", "izhevsk", True, "val-1181-000321")


# --- where the broker comes from, and what publishing prints ----------------------------------

class FakePublish:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, bootstrap, topic, message, key, *, source, signers=None):
        self.calls.append({"bootstrap": bootstrap.bootstrap, "topic": topic, "message": message,
                           "key": key, "source": source, "signers": signers})
        return kafka.Sent(topic, 1, 42, key, {"ce_id": "id-1", "ce_type": message.TYPE})


@pytest.fixture
def sent(monkeypatch) -> FakePublish:
    fake = FakePublish()
    monkeypatch.setattr(kafka, "publish", fake)
    return fake


def test_published_message_is_reported_with_partition_offset_and_id(cli, sent):
    result = cli("publish", "topup", "-c", "40012345", "--amount", "150")
    assert result.exit_code == 0, result.output
    assert "published schoolcard.integrations.TopUpReceived -> integrations.topups.v1[1]@42 " \
           "key 40012345 id id-1" in result.stdout
    assert "amount=150,00 ₽" in result.stdout
    [call] = sent.calls
    assert call["bootstrap"] == "fake:9092" and call["source"] == "integrator:cli"
    # signed with the payment integrator's dev key that `make up` wrote into the run directory
    assert call["signers"].by_integrator["integrator:payments"].kid == "integrator:payments"
    result = cli("--json", "--source", "integrator:bank-izh", "publish", "topup", "-c",
                 "40012345", "--amount", "150")
    out = json.loads(result.stdout)
    assert (out["partition"], out["offset"], out["id"], out["published"]) == (1, 42, "id-1", True)
    assert sent.calls[-1]["source"] == "integrator:bank-izh"


def test_a_top_up_without_the_integrators_key_is_not_published(cli, sent, tmp_path):
    missing = str(tmp_path / "missing.pem")
    result = cli("publish", "--signing-key", missing, "topup", "-c", "40012345", "--amount", "1")
    assert result.exit_code == 1
    assert "TopUpReceived must be signed by integrator:payments" in result.stderr
    assert sent.calls == []
    assert cli("publish", "--signing-key", missing, "gate-tap", "--card-uid", "04A2B3C4",
               "--school-id", "izh-1", "--gate-id", "g1").exit_code == 0  # needs no signature


def test_bootstrap_from_the_environment(cli, sent, monkeypatch):
    monkeypatch.setenv("SCHOOLCARD_KAFKA_BOOTSTRAP", "env-host:9092")
    assert cli("publish", "topup", "-c", "40012345", "--amount", "1",
               bootstrap=None).exit_code == 0
    assert sent.calls[-1]["bootstrap"] == "env-host:9092"


def test_bootstrap_from_a_running_stack(cli, sent):
    state = {"procs": [{"name": "kafka", "pid": os.getpid(), "port": 1, "log": "x"}],
             "env": {"SCHOOLCARD_KAFKA_BOOTSTRAP": "127.0.0.1:39092"}}
    Path(cli.run_dir, "stack.json").write_text(json.dumps(state))
    assert cli("publish", "topup", "-c", "40012345", "--amount", "1",
               bootstrap=None).exit_code == 0
    assert sent.calls[-1]["bootstrap"] == "127.0.0.1:39092"


def test_a_stale_stack_file_or_no_broker_at_all_is_explained(cli, sent):
    result = cli("publish", "topup", "-c", "40012345", "--amount", "1", bootstrap=None)
    assert result.exit_code == 1
    assert "no Kafka broker" in result.stderr and "make up" in result.stderr
    state = {"procs": [{"name": "kafka", "pid": 2**22 + 12345, "port": 1, "log": "x"}],
             "env": {"SCHOOLCARD_KAFKA_BOOTSTRAP": "127.0.0.1:39092"}}
    Path(cli.run_dir, "stack.json").write_text(json.dumps(state))
    result = cli("publish", "topup", "-c", "40012345", "--amount", "1", bootstrap=None)
    assert result.exit_code == 1 and "not running" in result.stderr
    assert sent.calls == []


def test_broker_problems_are_one_line_errors(cli, monkeypatch):
    async def missing(*a, **kw):
        raise kafka.KafkaProblem("topic integrations.topups.v1 does not exist on fake:9092")

    monkeypatch.setattr(kafka, "publish", missing)
    result = cli("publish", "topup", "-c", "40012345", "--amount", "1")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: topic integrations.topups.v1 does not exist on "
                                     "fake:9092")
