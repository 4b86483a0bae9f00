"""The web cabinet's files as the gateway serves them, without a broker: the security headers,
the idle-timeout setting the page reads, and nothing loaded from another origin."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.gateway import web

pytestmark = pytest.mark.unit


@pytest.fixture
def client() -> TestClient:
    api = FastAPI()

    @api.get("/v1/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    web.mount(api, idle_timeout_s=90)
    return TestClient(api)


def test_the_page_is_served_at_the_root_with_a_policy_that_allows_only_its_own_origin(
        client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("/cabinet.js", "/cabinet.css"):
        answer = client.get(asset)
        assert answer.status_code == 200
        assert answer.headers["content-security-policy"] == csp


def test_routes_added_before_the_cabinet_still_answer(client: TestClient) -> None:
    assert client.get("/v1/ping").json() == {"ok": True}
    assert client.get("/no-such-file.txt").status_code == 404


def test_the_page_reads_its_idle_timeout_from_the_gateway(client: TestClient) -> None:
    assert client.get("/cabinet-config.json").json() == {"idle_timeout_s": 90}


def test_nothing_on_the_page_comes_from_another_origin_nor_runs_inline() -> None:
    for path in web.WEB_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path.name
        assert "@import" not in text and "url(http" not in text, path.name
    html = (web.WEB_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)  # every script is a file
    assert " style=" not in html and " on" + "click=" not in html


def test_tokens_never_go_to_local_storage() -> None:
    script = (web.WEB_DIR / "cabinet.js").read_text(encoding="utf-8")
    assert "localStorage" not in script and "document.cookie" not in script
    assert "sessionStorage" in script
