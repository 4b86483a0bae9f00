"""The gateway's OpenAPI 3.1 document: ``python -m services.gateway.openapi > docs/openapi.json``
(``make docs``); a test fails when the committed file is stale."""

from __future__ import annotations

import json
import sys

from services.gateway.routes import build


def render() -> str:
    return json.dumps(build().openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
