"""Property-based calls of the gateway's published OpenAPI document (docs/openapi.json) against
the running gateway, with schemathesis: the five services and the gateway as processes, a real
parent (registered, confirmed by the SMS code, logged in, a child linked) calling every
operation with generated data — data that fits the document (on the parent's own child) and
data that does not. Every answer must be documented: no 5xx other than the documented 503/504,
only documented statuses and media types, every body matching its schema.

Small and repeatable: a few derandomized examples per operation and generation mode, no
shrinking (a failing case is reported as it was sent). The figures (operations, examples,
failures) are written to ``<run dir>/schemathesis.json`` and printed.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from tests.system.test_gateway import Stack, gateway_stack, new_card, registered_parent

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 4  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# A call no service answers is a 504 after GATEWAY_REQUEST_TIMEOUT_S (10 s): documented, and
# still a failure here (not_a_server_error), since nothing is down during the run.
GATEWAY_ENV = {"GATEWAY_TRUSTED_PROXIES": '["127.0.0.1"]'}
# The event stream stays open until the token expires: it is read in test_gateway.py.
STREAMS = {("GET", "/v1/events")}
# Every call from an address of its own: the per-address rate limits do not end the run early
# (they are tested in test_gateway.py; a 429 would still be checked against the document).
ADDRESSES = (f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in itertools.count(1))
# Ending the parent's sessions would make every later call a 401: these go last.
LAST = {("DELETE", "/v1/sessions/current"), ("DELETE", "/v1/sessions")}


@dataclass
class Parent:
    token: str
    contract: str


@dataclass
class Figures:
    operations: list[str] = field(default_factory=list)
    examples: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    no_invalid_form: list[str] = field(default_factory=list)
    """Operations with nothing to send wrong (no parameters, body or credentials: GET
    /v1/faq): the negative mode has no case to generate."""

    def as_dict(self) -> dict[str, Any]:
        return {"operations": len(self.operations), "examples": sum(self.examples.values()),
                "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
                "by_operation": {op: dict(sorted(c.items()))
                                 for op, c in self.by_operation.items()},
                "failing_operations": len(self.failures),
                "no_invalid_form": self.no_invalid_form,
                "failures": self.failures}


@pytest.fixture(scope="module")
def stack(infra: dict[str, str], run_dir: Any) -> Iterator[Stack]:
    yield from gateway_stack(infra, run_dir, "st", GATEWAY_ENV)


@pytest.fixture(scope="module")
async def parent(stack: Stack, bootstrap: str) -> Parent:
    """A parent registered and logged in through the gateway, with a child linked."""
    setup = await registered_parent(stack, bootstrap, new_card(), ip="198.51.100.250")
    assert setup.contract is not None
    return Parent(setup.token, setup.contract)


def test_every_operation_answers_generated_calls_as_its_openapi_document_says(
        stack: Stack, parent: Parent, run_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if (op.method.upper(), op.path) not in STREAMS]
    operations.sort(key=lambda op: (op.method.upper(), op.path) in LAST)
    figures = Figures()
    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        figures.operations.append(label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, stack.url, parent, label, figures)

    report = figures.as_dict()
    (run_dir / "schemathesis.json").write_text(json.dumps(report, indent=2,
                                                          ensure_ascii=False))
    with capsys.disabled():
        print(f"\nschemathesis: {report['operations']} operations, {report['examples']} "
              f"examples, statuses {report['statuses']}, {report['failing_operations']} "
              f"operations failing")
    assert len(figures.operations) >= 29
    assert all(figures.examples[op] >= EXAMPLES for op in figures.operations
               if op not in figures.no_invalid_form), figures.examples  # GET /v1/faq: one call
    assert figures.statuses[200] > 0, "no generated call went through to a service"
    [children] = [op for op in operations if (op.method.upper(), op.path) == ("GET",
                                                                             "/v1/children")]
    assert _the_checks_refuse_a_body_off_its_schema(children, stack.url)
    assert not figures.failures, json.dumps(figures.failures, indent=2, ensure_ascii=False)
    assert len(figures.no_invalid_form) <= 3, figures.no_invalid_form


def _run(operation: Any, mode: GenerationMode, url: str, parent: Parent, label: str,
         figures: Figures) -> None:
    # Data that fits the document is sent for the parent's own child, so it reaches the
    # services and their replies are checked too; data that does not keeps its own contract.
    fixed = ({"contract": parent.contract}
             if mode.is_positive and "{contract}" in operation.path else None)
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @hypothesis.settings(max_examples=EXAMPLES, derandomize=True, database=None,
                         deadline=None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def call(case: Any) -> None:
        figures.examples[label] += 1
        headers = {"Authorization": f"Bearer {parent.token}",
                   "Idempotency-Key": str(uuid.uuid4()),
                   "X-Forwarded-For": next(ADDRESSES)}
        response = case.call(base_url=url, headers=headers, timeout=30)
        figures.statuses[response.status_code] += 1
        figures.by_operation.setdefault(label, Counter())[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:  # every failure is collected; the run goes on
            figures.failures.setdefault(label, []).append(
                f"{mode.value}: {case.method} {case.formatted_path} -> "
                f"{response.status_code}: {_first_line(exc)}")

    try:
        call()
    except hypothesis.errors.Unsatisfiable:
        if mode.is_positive:
            raise
        figures.no_invalid_form.append(label)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " | ".join(line for line in text.splitlines()[:6] if line.strip())[:600]


def _the_checks_refuse_a_body_off_its_schema(operation: Any, url: str) -> bool:
    """The harness itself can fail: /healthz's body given as the answer of GET /v1/children
    (200, JSON, without ``children``) is refused by the checks."""
    case = operation.Case()
    try:
        case.validate_response(requests.get(f"{url}/healthz", timeout=10), checks=CHECKS)
    except (Failure, FailureGroup):
        return True
    return False
