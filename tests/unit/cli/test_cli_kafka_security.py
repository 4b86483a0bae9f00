"""The CLI connects with the same ``SCHOOLCARD_KAFKA_*`` security settings as the services;
a contradiction is one line on stderr, without the password."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli import kafka

pytestmark = pytest.mark.unit

PASSWORD = "cli-pa55word"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    async def lag(conn, group=None):
        seen.append(conn)
        return []

    monkeypatch.setattr(kafka, "lag", lag)
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                 "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
        monkeypatch.delenv(f"SCHOOLCARD_KAFKA_{name}", raising=False)
    return seen


def test_the_cli_connects_with_the_configured_scram_credentials(cli, connections,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SASL_USERNAME", "schoolcard-operators")
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SASL_PASSWORD", PASSWORD)
    result = cli("lag")
    assert result.exit_code == 0, result.output
    [conn] = connections
    options = conn.options()
    assert (options["bootstrap_servers"], options["security_protocol"],
            options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "fake:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512", "schoolcard-operators")


def test_contradictory_settings_fail_in_one_line_without_the_password(cli, connections,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SASL_USERNAME", "schoolcard-operators")
    monkeypatch.setenv("SCHOOLCARD_KAFKA_SASL_PASSWORD", PASSWORD)
    result = cli("lag")
    assert result.exit_code == 1 and connections == []
    assert result.stderr.startswith("error: Kafka security settings: SCHOOLCARD_KAFKA_SASL_*")
    assert "does not authenticate" in result.stderr and PASSWORD not in result.output
