"""The gateway's OpenAPI document: committed, current, and saying what a client must send."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.gateway import openapi

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_openapi_document_is_current() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi.render(), "docs/openapi.json is stale: run `make docs`"


def test_every_call_that_changes_something_requires_an_idempotency_key() -> None:
    doc = json.loads(openapi.render())
    assert doc["openapi"].startswith("3.1")
    mutating = [(path, method, op) for path, ops in doc["paths"].items()
                for method, op in ops.items() if method in {"post", "put", "patch", "delete"}]
    assert len(mutating) >= 15
    for path, method, op in mutating:
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in headers, f"{method.upper()} {path}"


def test_no_request_body_lets_the_client_set_its_address_device_or_account() -> None:
    doc = json.loads(openapi.render())
    bodies = {n: s for n, s in doc["components"]["schemas"].items() if n.endswith("Body")}
    assert {"LoginBody", "RegistrationBody", "ControlsBody"} <= set(bodies)
    for name, schema in bodies.items():
        assert schema.get("additionalProperties") is False, name
        assert not {"ip", "device", "account_id", "request_id"} & set(
            schema.get("properties", {})), name
