"""Trusted devices over HTTP: the gateway in-process (on auth's fake clock) in front of auth
in-process, through the real broker. A login returns the device token in the body and as an
HttpOnly cookie; sent back (header or cookie) it is the same device; /v1/devices lists,
renames and revokes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest

from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from tests.integration.test_auth_flows import auth, parent

__all__ = ["auth"]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def gateway(infra: dict[str, str], auth: SimpleNamespace) -> AsyncIterator[Gateway]:
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"dev-{uuid.uuid4().hex[:8]}", request_timeout_s=20)
    gw = Gateway(settings, clock=lambda: auth.clock.now.timestamp())
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def test_a_device_keeps_its_token_over_http_and_the_owner_manages_the_list(
        auth, gateway) -> None:
    p = await parent(auth, link=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway.api),
                                 base_url="https://gw",
                                 headers={"User-Agent": "Firefox 140, Linux"}) as http:
        body = {"login": p.phone, "password": p.password}
        first = await http.post("/v1/sessions", json=body, headers=key())
        assert first.status_code == 200, first.text
        token = first.json()["device_token"]
        assert token and token != p.device_token
        cookie = first.headers["set-cookie"]
        assert f"schoolcard_device={token}" in cookie and "HttpOnly" in cookie \
            and "Secure" in cookie and "samesite=strict" in cookie.lower()

        by_header = await http.post("/v1/sessions", json=body,
                                    headers={**key(), "X-Device-Token": token})
        assert by_header.status_code == 200 and by_header.json()["device_token"] == token
        http.cookies.set("schoolcard_device", token, domain="gw")
        by_cookie = await http.post("/v1/sessions", json=body, headers=key())
        assert by_cookie.status_code == 200 and by_cookie.json()["device_token"] == token
        http.cookies.clear()

        bearer = {"Authorization": f"Bearer {by_cookie.json()['access_token']}"}
        listed = await http.get("/v1/devices", headers=bearer)
        assert listed.status_code == 200, listed.text
        devices = listed.json()["devices"]
        assert len(devices) == 2  # parent()'s first login, and this browser
        mine = next(d for d in devices if d["name"] == "Firefox 140, Linux")

        renamed = await http.patch(f"/v1/devices/{mine['device_id']}",
                                   json={"name": "Ноутбук"}, headers={**bearer, **key()})
        assert renamed.status_code == 200, renamed.text
        names = {d["name"] for d in (await http.get("/v1/devices", headers=bearer)).json()[
            "devices"]}
        assert "Ноутбук" in names
        sessions = await http.get("/v1/sessions", headers=bearer)
        assert sessions.status_code == 200, sessions.text
        [this] = [x for x in sessions.json()["sessions"] if x["current"]]
        assert (this["device_id"], this["device_name"]) == (mine["device_id"], "Ноутбук")

        revoked = await http.delete(f"/v1/devices/{mine['device_id']}",
                                    headers={**bearer, **key()})
        assert revoked.status_code == 200, revoked.text
        # this browser was that device: its session ended with it
        ended = await http.get("/v1/devices", headers=bearer)
        assert ended.status_code == 401 and ended.json()["code"] == "session_revoked", ended.text
        other = {"Authorization": f"Bearer {p.access_token}"}  # parent()'s first device
        again = await http.delete(f"/v1/devices/{mine['device_id']}",
                                  headers={**other, **key()})
        assert again.status_code == 404 and again.json()["code"] == "device_not_found"
        stranger = await http.post("/v1/sessions", json=body,
                                   headers={**key(), "X-Device-Token": token})
        assert stranger.status_code == 200 and stranger.json()["device_token"] != token
