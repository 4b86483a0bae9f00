"""The gateway's help area without a broker: the FAQ is served to anyone, in Russian, by
topic and version; the support and device calls need a login."""

from __future__ import annotations

import httpx
import pytest

from contracts.notify import SupportTopic
from services.gateway.routes import build
from services.gateway.routes.support import faq

pytestmark = pytest.mark.unit


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build()), base_url="http://gw")


async def test_the_faq_is_served_without_a_login_with_its_version():
    async with _client() as client:
        answer = await client.get("/v1/faq")
    assert answer.status_code == 200
    body = answer.json()
    assert body["language"] == "ru" and answer.headers["etag"] == f'"{body["version"]}"'
    questions = [item["question"] for s in body["sections"] for item in s["items"]]
    assert len(questions) >= 10 and all(q.endswith("?") for q in questions)
    assert any("потерял карту" in q for q in questions)


def test_every_faq_section_names_a_support_topic_and_every_item_a_unique_anchor():
    document = faq()
    assert {s.topic for s in document.sections} <= set(SupportTopic)
    ids = [item.id for s in document.sections for item in s.items]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/notifications/preferences"), ("GET", "/v1/push-tokens"),
    ("DELETE", "/v1/push-tokens/pt_3f9a0c1d2e4b5a6978e1d2c3"),
    ("GET", "/v1/support/requests"), ("GET", "/v1/support/requests/sup_5b1c9e0a7d3f2468"),
])
async def test_devices_preferences_and_support_requests_need_a_login(method, path):
    async with _client() as client:
        answer = await client.request(method, path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthenticated"
