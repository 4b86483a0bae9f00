"""The gateway's OpenAPI 3.1 document: ``python -m services.gateway.openapi > docs/openapi.json``
(``make docs``); a test fails when the committed file is stale."""

from __future__ import annotations

import json
import sys
from typing import Any

from services.gateway.routes import build

REF = "#/components/schemas/"


def render() -> str:
    document = build().openapi()
    _secrets_readable_in_answers(document)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _secrets_readable_in_answers(document: dict[str, Any]) -> None:
    """Pydantic marks a secret ``writeOnly`` (a password is sent, never read back); the tokens
    a reply carries (SessionTokens, the TOTP secret) are read by the client that asked. A
    schema used only in answers loses the mark, so a validator does not refuse the tokens it
    was promised; one used in request bodies keeps it."""
    schemas = document.get("components", {}).get("schemas", {})
    operations = [op for item in document.get("paths", {}).values() for op in item.values()
                  if isinstance(op, dict)]
    answers = _reachable([op.get("responses", {}) for op in operations], schemas)
    asked = _reachable([{k: v for k, v in op.items() if k != "responses"}
                        for op in operations], schemas)
    for name in answers - asked:
        _drop_write_only(schemas[name])


def _reachable(roots: list[Any], schemas: dict[str, Any]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF) and ref[len(REF):] not in seen:
                seen.add(ref[len(REF):])
                todo.append(schemas.get(ref[len(REF):], {}))
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return seen


def _drop_write_only(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("writeOnly", None)
        for value in node.values():
            _drop_write_only(value)
    elif isinstance(node, list):
        for value in node:
            _drop_write_only(value)


if __name__ == "__main__":
    sys.stdout.write(render())
