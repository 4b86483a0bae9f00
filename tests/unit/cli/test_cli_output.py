"""What operators read: tail lines (decoded and undecodable records), dead-letter listings and
replays, query replies (tables, CSV, errors, tokens) and consumer lag — Kafka faked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.envelope import ErrorInfo, ErrorReply
from contracts.integrations import TopUpReceived
from contracts.transit import RideLine, RidesReply
from contracts.wallet import BalanceReply, Balances, StatementLine, StatementReply
from services.cli import kafka, render
from services.runtime.tokens import generate_keypair, verify_access_token
from tests.unit.cli.conftest import agen, raw_of

pytestmark = pytest.mark.unit

AT = datetime(2026, 9, 1, 5, 12, 30, tzinfo=UTC)
TOP_UP = TopUpReceived(payment_id="sbp-1", contract="40012345", amount=15000,
                       channel="bank_card", paid_at=AT)
TOPUPS = "integrations.topups.v1"
DLQ_HEADERS = {"dlq_code": "schema_violation", "dlq_reason": "amount: Input should be > 0",
               "dlq_source_topic": TOPUPS, "dlq_source_partition": "2",
               "dlq_source_offset": "17", "dlq_consumer_group": "schoolcard-wallet",
               "dlq_failed_at": "2026-09-01T05:13:00+00:00", "dlq_attempts": "1"}


def raw(value: bytes | None, headers: dict[str, str], offset: int = 0, key: str | None = "k",
        topic: str = TOPUPS, partition: int = 0) -> kafka.Raw:
    return kafka.Raw(topic, partition, offset, 1_788_000_000_000, key, value, headers)


def records() -> list[kafka.Raw]:
    good = raw_of(TOP_UP, topic=TOPUPS, key="40012345", offset=0)
    not_json = raw(b"\xff garbage", {**good.headers, "ce_id": "x"}, offset=1)
    no_headers = raw(b"{}", {}, offset=2)
    wrong_topic = raw(good.value, {**good.headers,
                                   "ce_type": "schoolcard.integrations.GateTapped"}, offset=3)
    return [good, not_json, no_headers, wrong_topic]


@pytest.fixture
def tail_of(monkeypatch):
    seen: dict[str, Any] = {}

    def fake(bootstrap, topic, **kw):
        seen.update(kw, topic=topic)
        return agen(records())

    monkeypatch.setattr(kafka, "read", fake)
    return seen


def test_tail_shows_decoded_and_undecodable_records(cli, tail_of):
    result = cli("tail", TOPUPS, "--from-beginning", "--no-follow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "0:0" in lines[0] and "40012345" in lines[0]
    assert "integrations.TopUpReceived" in lines[0]
    assert "amount=150,00 ₽" in lines[0] and "payment_id=sbp-1" in lines[0]
    assert "UNDECODABLE" in lines[1] and "not_json" in lines[1]
    assert "UNDECODABLE" in lines[2] and "missing_headers" in lines[2]
    assert "UNDECODABLE" in lines[3] and "unexpected_type" in lines[3]
    assert tail_of["from_beginning"] is True and tail_of["follow"] is False
    assert "4 record(s)" in result.stderr


def test_tail_json_is_one_object_per_record_and_limit_and_filters_apply(cli, tail_of):
    result = cli("--json", "tail", TOPUPS, "--limit", "2")
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objs) == 2
    assert objs[0]["payload"]["amount"] == 15000 and objs[0]["key"] == "40012345"
    assert objs[1]["undecodable"].startswith("not_json") and objs[1]["value"]
    result = cli("--json", "tail", TOPUPS, "--type", "topupreceived", "--key", "40012345")
    assert [json.loads(line)["offset"] for line in result.stdout.splitlines()] == [0]


def test_summary_formats_money_and_counts_lists():
    text = render.summarize({"contract": "40012345", "total": 123450, "items": [{"a": 1}] * 3,
                             "balances": {"general": 0, "canteen": 12550},
                             "reason": None, "tags": ["a", "b"]})
    assert text == ("contract=40012345 total=1 234,50 ₽ items=[3 items] "
                    "balances={general=0,00 ₽ canteen=125,50 ₽} tags=[a,b]")
    assert render.summarize({"x": "y" * 500}, width=20).endswith("…")


# --- dead letters -----------------------------------------------------------------------------

def dead_letters() -> list[kafka.Raw]:
    base = raw_of(TOP_UP, topic="wallet.dead-letter.v1", key="40012345", extra=DLQ_HEADERS)
    return [kafka.Raw(base.topic, p, o, 1_788_000_000_000 + i, base.key, base.value,
                      dict(base.headers)) for i, (p, o) in enumerate([(0, 0), (1, 0), (0, 1)])]


@pytest.fixture
def dlq(monkeypatch):
    published: list[Any] = []

    async def read_all(bootstrap, topic):
        assert topic == "wallet.dead-letter.v1"
        return dead_letters()

    async def publish_raw(bootstrap, items):
        items = list(items)
        published.extend(items)
        return [kafka.Sent(t, 2, 100 + i, k, h) for i, (t, k, _v, h, _p) in enumerate(items)]

    async def require_topic(bootstrap, topic, hint=""):
        assert topic == TOPUPS

    monkeypatch.setattr(kafka, "read_all", read_all)
    monkeypatch.setattr(kafka, "require_topic", require_topic)
    monkeypatch.setattr(kafka, "publish_raw", publish_raw)
    return published


def test_dlq_list_shows_reason_code_and_source(cli, dlq):
    result = cli("dlq", "list", "wallet")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("wallet.dead-letter.v1: 3 record(s)", "schema_violation",
                 "amount: Input should be > 0", f"{TOPUPS}[2]@17", "schoolcard-wallet",
                 "TopUpReceived"):
        assert text in out
    result = cli("--json", "dlq", "list", "wallet", "--limit", "1")
    [only] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (only["partition"], only["offset"]) == (0, 1)  # the most recent
    assert only["dlq"]["dlq_source_offset"] == "17"


def test_dlq_unknown_service_is_a_usage_error(cli, dlq):
    result = cli("dlq", "list", "billing")
    assert result.exit_code == 2 and "unknown service 'billing'" in result.stderr


def test_replay_item_strips_dlq_headers_and_keeps_the_rest():
    record = dead_letters()[0]
    topic, key, value, headers, partition = kafka.replay_item(record)
    assert (topic, key, value, partition) == (TOPUPS, "40012345", record.value, None)
    assert not any(h.startswith("dlq_") for h in headers)
    assert headers["ce_id"] == record.headers["ce_id"]
    assert headers["ce_type"] == "schoolcard.integrations.TopUpReceived"
    keyless = kafka.Raw(record.topic, 0, 5, None, None, record.value, record.headers)
    assert kafka.replay_item(keyless)[4] == 2  # routed to the source partition
    with pytest.raises(kafka.KafkaProblem, match="not a dead letter"):
        kafka.replay_item(kafka.Raw(record.topic, 0, 6, None, "k", b"{}", {"ce_id": "1"}))


def test_dlq_replay_one_offset_needs_a_partition_when_ambiguous(cli, dlq):
    result = cli("dlq", "replay", "wallet", "--offset", "0")
    assert result.exit_code == 2 and "add --partition" in result.stderr
    result = cli("dlq", "replay", "wallet", "--offset", "0", "--partition", "1")
    assert result.exit_code == 0, result.output
    assert f"replayed wallet.dead-letter.v1 1:0 (schoolcard.integrations.TopUpReceived, key " \
           f"40012345) -> {TOPUPS}[2]@100" in result.stdout
    [(topic, key, _value, headers, _p)] = dlq
    assert topic == TOPUPS and key == "40012345" and "dlq_code" not in headers


def test_dlq_replay_all_and_dry_run_and_argument_checks(cli, dlq):
    assert cli("dlq", "replay", "wallet").exit_code == 2
    assert cli("dlq", "replay", "wallet", "--all", "--offset", "1").exit_code == 2
    assert cli("dlq", "replay", "wallet", "--offset", "9").exit_code == 1
    result = cli("dlq", "replay", "wallet", "--all", "--dry-run")
    assert result.stdout.count("would replay") == 3 and dlq == []
    result = cli("--json", "dlq", "replay", "wallet", "--all")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["to_offset"] for r in rows] == [100, 101, 102] and len(dlq) == 3


# --- queries ----------------------------------------------------------------------------------

@pytest.fixture
def replier(monkeypatch):
    state: dict[str, Any] = {"reply": None, "calls": []}

    async def request(bootstrap, message, topic, key, *, token, source, timeout):
        state["calls"].append({"message": message, "topic": topic, "key": key, "token": token,
                               "source": source})
        return raw_of(state["reply"], topic="apps.replies.v1", key="corr")

    monkeypatch.setattr(kafka, "request", request)
    return state


BALANCES = Balances(general=123450, canteen=-8500, transit=3000, bonus_points=120)


def test_balance_table_with_a_token(cli, replier):
    replier["reply"] = BalanceReply(contract="40012345", balances=BALANCES, blocked=True)
    result = cli("balance", "40012345", "--token", "tok-1")
    assert result.exit_code == 0, result.output
    for text in ("contract 40012345", "BLOCKED", "1 234,50 ₽", "-85,00 ₽", "30,00 ₽", "120"):
        assert text in result.stdout.replace("\u00a0", " ")
    [call] = replier["calls"]
    assert (call["topic"], call["key"], call["token"]) == ("wallet.commands.v1", "40012345",
                                                          "tok-1")
    assert call["source"] == "operator:cli"


def test_token_from_env_and_json_output(cli, replier, monkeypatch):
    monkeypatch.setenv("SCHOOLCARD_TOKEN", "Bearer env-token")
    replier["reply"] = BalanceReply(contract="40012345", balances=BALANCES)
    result = cli("--json", "balance", "40012345")
    assert json.loads(result.stdout)["balances"]["general"] == 123450
    assert replier["calls"][0]["token"] == "env-token"


def test_queries_need_a_token_and_a_valid_contract(cli, replier):
    result = cli("balance", "40012345")
    assert result.exit_code == 2 and "--token" in result.stderr and "--as-support" in \
        result.stderr
    result = cli("balance", "123", "--token", "t")
    assert result.exit_code == 2 and "invalid GetBalance" in result.stderr
    result = cli("balance", "40012345", "--as-support")
    assert result.exit_code == 2 and "auth_ed25519.pem" in result.stderr
    assert replier["calls"] == []


def test_as_support_signs_a_support_token_with_the_dev_key(cli, replier):
    private, public = generate_keypair()
    (cli.run_dir / "auth_ed25519.pem").write_text(private)
    replier["reply"] = BalanceReply(contract="40012345", balances=BALANCES)
    assert cli("balance", "40012345", "--as-support").exit_code == 0
    claims = verify_access_token(replier["calls"][0]["token"], public, audience="wallet")
    assert claims.role == "support" and claims.exp - claims.iat == 300


def test_error_reply_exits_1_with_code_and_message(cli, replier):
    replier["reply"] = ErrorReply(error=ErrorInfo(code="forbidden", message="not allowed to view"))
    result = cli("balance", "40012345", "--token", "t")
    assert result.exit_code == 1
    assert "error: forbidden: not allowed to view" in result.stderr


def test_statement_table_and_csv(cli, replier):
    line = StatementLine(at=AT, kind="sale", operation_id="till-7-000981", amount=-4500,
                         sub_balance="canteen", status="posted",
                         description="terminal izh-42-till-1",
                         items=[{"sku": "bun", "name": "Булочка", "category": "bakery",
                                 "qty": 2, "unit_price": 2250}])
    replier["reply"] = StatementReply(contract="40012345", lines=[line],
                                      csv="date,kind,amount\r\n2026-09-01,sale,-45.00\r\n")
    result = cli("statement", "40012345", "--from", "2026-09-01", "--to", "2026-09-30",
                 "--kind", "sale", "--token", "t")
    assert result.exit_code == 0, result.output
    for text in ("statement of 40012345: 1 line(s)", "2026-09-01 05:12", "till-7-000981",
                 "-45,00 ₽", "Булочка ×2"):
        assert text in result.stdout.replace("\u00a0", " ")
    query = replier["calls"][0]["message"]
    assert (query.date_from, query.date_to, query.kinds, query.csv) == (
        "2026-09-01", "2026-09-30", ["sale"], False)
    result = cli("statement", "40012345", "--csv", "--token", "t")
    assert result.stdout.startswith("date,kind,amount") and replier["calls"][-1]["message"].csv
    result = cli("statement", "40012345", "--from", "1.9.2026", "--token", "t")
    assert result.exit_code == 2 and "date_from" in result.stderr


def test_rides_and_attendance_go_to_their_services(cli, replier):
    replier["reply"] = RidesReply(contract="40012345", rides=[
        RideLine(ride_id="val-1", tapped_at=AT, route="29", stop_id="stop-1", mode="bus",
                 fare=3000, explanation="full_fare"),
        RideLine(ride_id="val-2", tapped_at=AT, route="10", stop_id="stop-2", mode="tram",
                 fare=0, explanation="transfer_free")])
    result = cli("rides", "40012345", "--token", "t")
    out = result.stdout.replace("\u00a0", " ")
    assert "rides of 40012345: 2" in out and "transfer_free" in out and "30,00 ₽" in out
    assert replier["calls"][-1]["topic"] == "transit.commands.v1"
    from contracts.access import StudentStatsReply

    replier["reply"] = StudentStatsReply(contract="40012345", days_present=18, late_count=2,
                                         average_arrival="08:17")
    result = cli("attendance", "40012345", "--from", "2026-09-01", "--to", "2026-09-30",
                 "--token", "t")
    assert result.exit_code == 0, result.output
    assert "days present" in result.stdout and "18" in result.stdout and "08:17" in result.stdout
    assert replier["calls"][-1]["topic"] == "access.commands.v1"
    assert cli("attendance", "40012345", "--token", "t").exit_code == 2  # --from/--to required


def test_a_reply_of_the_wrong_type_is_reported(cli, replier):
    replier["reply"] = BalanceReply(contract="40012345", balances=BALANCES)
    result = cli("rides", "40012345", "--token", "t")
    assert result.exit_code == 1 and "unexpected reply" in result.stderr


# --- lag --------------------------------------------------------------------------------------

def test_lag_table_and_json(cli, monkeypatch):
    groups = [kafka.GroupInfo("schoolcard-wallet", "Stable", 1, [
        kafka.LagRow("schoolcard-wallet", TOPUPS, 0, 5, 9),
        kafka.LagRow("schoolcard-wallet", TOPUPS, 1, 3, 3)]),
        kafka.GroupInfo("schoolcard-access", "Empty", 0, [])]

    async def fake(bootstrap, group=None):
        return groups

    monkeypatch.setattr(kafka, "lag", fake)
    result = cli("lag")
    assert result.exit_code == 0, result.output
    assert "schoolcard-wallet" in result.stdout and "Stable (1)" in result.stdout
    assert "total" in result.stdout and "Empty (0)" in result.stdout
    [wallet, access] = json.loads(cli("--json", "lag").stdout)
    assert wallet["lag"] == 4 and [p["lag"] for p in wallet["partitions"]] == [4, 0]
    assert access == {"group": "schoolcard-access", "state": "Empty", "members": 0, "lag": 0,
                      "partitions": []}
