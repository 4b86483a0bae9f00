"""Trusted devices: the account's devices that keep a device token (list, rename, revoke)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from contracts import auth
from contracts.types import Identifier
from services.gateway.routes.common import (
    AUTHED,
    MUTATING,
    Auth,
    Body,
    Key,
    ask,
    build_message,
    gateway,
)


class RenameDeviceBody(Body):
    name: str = Field(min_length=1, max_length=120, description="The device's new name.",
                      examples=["Телефон мамы"])


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["devices"])

    @r.get("/devices", response_model=auth.TrustedDevicesReply, responses=AUTHED,
           summary="The account's trusted devices (no new-login alert from them)")
    async def list_devices(request: Request, me: Auth) -> auth.TrustedDevicesReply:
        return await ask(gateway(request), auth.ListTrustedDevices(), me.claims.sub,
                         auth.TrustedDevicesReply, token=me.token)

    @r.patch("/devices/{device_id}", response_model=auth.CommandCompleted, responses=MUTATING,
             summary="Rename a trusted device")
    async def rename_device(request: Request, device_id: Identifier, body: RenameDeviceBody,
                            me: Auth, key: Key) -> auth.CommandCompleted:
        message = build_message(auth.RenameTrustedDevice, request_id=key, device_id=device_id,
                                name=body.name)
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.delete("/devices/{device_id}", response_model=auth.CommandCompleted,
              responses=MUTATING, summary="Stop trusting a device and sign it out (its sessions "
              "end; its next login alerts the owner and meets the failure ceiling like a "
              "stranger's)")
    async def revoke_device(request: Request, device_id: Identifier, me: Auth,
                            key: Key) -> auth.CommandCompleted:
        message = build_message(auth.RevokeTrustedDevice, request_id=key, device_id=device_id)
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    return r
