"""The gateway's cards area without a broker: every call needs a login, and a card uid that no
reader could produce is refused before anything is sent."""

from __future__ import annotations

import httpx
import pytest

from services.gateway.routes import build

pytestmark = pytest.mark.unit


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build()), base_url="http://gw")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/children/40012345/cards"),
    ("POST", "/v1/children/40012345/cards/08F1E2D3C4B5A6/block"),
    ("POST", "/v1/children/40012345/cards/08F1E2D3C4B5A6/unblock"),
])
async def test_the_cards_calls_need_a_login(method, path):
    async with _client() as client:
        answer = await client.request(method, path)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthenticated"


def test_the_cards_calls_are_in_the_openapi_document_with_the_uid_pattern():
    document = build().openapi()
    block = document["paths"]["/v1/children/{contract}/cards/{card_uid}/block"]["post"]
    [uid] = [p for p in block["parameters"] if p["name"] == "card_uid"]
    assert uid["schema"]["pattern"] == "^[0-9A-F]{8,20}$"
    assert "/v1/children/{contract}/cards" in document["paths"]
