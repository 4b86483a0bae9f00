"""The web cabinet's files as the gateway serves them, without a broker: the security headers,
the idle-timeout setting the page reads, and nothing loaded from another origin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.gateway import web
from services.notify.domain.kinds import NotificationKind

pytestmark = pytest.mark.unit


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    api = FastAPI()

    @api.get("/v1/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    web.mount(api, idle_timeout_s=90)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://cabinet.test") as client:
        yield client


async def test_the_page_is_served_at_the_root_with_a_policy_that_allows_only_its_own_origin(
        client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset in ("/cabinet.js", "/cabinet.css"):
        answer = await client.get(asset)
        assert answer.status_code == 200
        assert answer.headers["content-security-policy"] == csp


async def test_routes_added_before_the_cabinet_still_answer(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/ping")).json() == {"ok": True}
    assert (await client.get("/no-such-file.txt")).status_code == 404


async def test_the_page_reads_its_idle_timeout_from_the_gateway(client: httpx.AsyncClient) -> None:
    assert (await client.get("/cabinet-config.json")).json() == {"idle_timeout_s": 90}


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


def test_the_journal_names_every_notification_kind_in_russian():
    script = (Path(web.__file__).parent / "web" / "cabinet.js").read_text(encoding="utf-8")
    table = re.search(r"const NOTIFICATION_KINDS = \{(.*?)\};", script, re.S)
    assert table is not None
    labelled = set(re.findall(r"(\w+): \"", table.group(1)))
    unnamed = {k.value for k in NotificationKind} - labelled - {"one_time_code"}
    assert not unnamed, f"the journal would show these raw: {sorted(unnamed)}"
