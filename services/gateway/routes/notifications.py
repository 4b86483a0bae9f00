"""Notification preferences, the journal, push tokens and the live stream (SSE)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse

from contracts import notify
from contracts.types import (
    LocalTime,
    Secret,
)
from services.gateway.problems import documented

if TYPE_CHECKING:
    pass

from services.gateway.routes.common import (
    AUTHED,
    MUTATING,
    Auth,
    Body,
    CommandAcceptedModel,
    Key,
    ask,
    body_fields,
    build_message,
    command,
    gateway,
    sse_event,
)


class PreferencesBody(Body):
    channels: dict[str, list[notify.Channel]] | None = None
    quiet_from: LocalTime | None = None
    quiet_to: LocalTime | None = None
    daily_digest: bool | None = None
    sms_informer: bool | None = None
    push: bool | None = None


class PushTokenBody(Body):
    token: Secret
    platform: Literal["android", "ios"] = "android"


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["notifications"])

    @r.patch("/notifications/preferences", response_model=CommandAcceptedModel,
             responses=MUTATING, summary="Channels per notification kind, quiet hours, digest")
    async def preferences(request: Request, body: PreferencesBody, me: Auth,
                          key: Key) -> Any:
        message = build_message(notify.SetPreferences, request_id=key,
                                account_id=me.claims.sub, **body_fields(body))
        return await command(request, message, me.claims.sub, me)

    @r.get("/notifications", response_model=notify.JournalReply, responses=AUTHED,
           summary="The notification journal, most recent first")
    async def journal(request: Request, me: Auth,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[str | None, Query(max_length=512)] = None,
                      kind: Annotated[list[str] | None, Query(
                          max_length=32, description="Only these kinds (repeat the "
                          "parameter for several).")] = None,
                      channel: Annotated[notify.Channel | None, Query()] = None,
                      status: Annotated[notify.JournalStatus | None, Query()] = None,
                      contract: Annotated[str | None, Query(
                          max_length=8, description="Only lines about this child.")] = None,
                      since: Annotated[datetime | None, Query(
                          description="From this instant (inclusive, with its offset).")]
                      = None,
                      until: Annotated[datetime | None, Query(
                          description="Before this instant (exclusive).")] = None,
                      ) -> notify.JournalReply:
        query = build_message(notify.GetJournal, account_id=me.claims.sub, limit=limit,
                              cursor=cursor, kinds=kind, channel=channel, status=status,
                              contract=contract, since=since, until=until)
        return await ask(gateway(request), query, me.claims.sub, notify.JournalReply,
                         token=me.token)

    @r.get("/notifications/preferences", response_model=notify.PreferencesReply,
           responses=AUTHED, summary="Channels per kind, quiet hours, digest and the SMS "
           "informer and push switches, as notify applies them")
    async def read_preferences(request: Request, me: Auth) -> notify.PreferencesReply:
        query = build_message(notify.GetPreferences, account_id=me.claims.sub)
        return await ask(gateway(request), query, me.claims.sub, notify.PreferencesReply,
                         token=me.token)

    @r.get("/push-tokens", response_model=notify.PushTokensReply, responses=AUTHED,
           summary="The devices notify pushes to (a fingerprint each, never the token)")
    async def list_push_tokens(request: Request, me: Auth) -> notify.PushTokensReply:
        query = build_message(notify.ListPushTokens, account_id=me.claims.sub)
        return await ask(gateway(request), query, me.claims.sub, notify.PushTokensReply,
                         token=me.token)

    @r.delete("/push-tokens/{token_id}", response_model=CommandAcceptedModel,
              responses=MUTATING, summary="Stop pushing to one device")
    async def remove_push_token(request: Request, token_id: Annotated[str, Path(
            max_length=128)], me: Auth, key: Key) -> Any:
        message = build_message(notify.RemovePushToken, request_id=key,
                                account_id=me.claims.sub, token_id=token_id)
        return await command(request, message, me.claims.sub, me)

    @r.post("/push-tokens", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Register this device's push token")
    async def push_token(request: Request, body: PushTokenBody, me: Auth, key: Key) -> Any:
        message = build_message(notify.RegisterPushToken, request_id=key,
                                account_id=me.claims.sub, **body_fields(body))
        return await command(request, message, me.claims.sub, me)

    @r.get("/events", response_class=StreamingResponse, responses={
        **documented(401), 200: {"content": {"text/event-stream": {}}, "description":
                                 "Server-Sent Events: `notification` (a delivery of one of "
                                 "the caller's notifications: notification_id, kind, channel, "
                                 "status, attempts, at) and a last `end` (reason "
                                 "token_expired, overflow or gateway_stopping: reconnect, "
                                 "then read GET /v1/notifications for what was missed)."}},
        summary="Live stream of the caller's notifications (SSE) until the token expires")
    async def events(request: Request, me: Auth) -> StreamingResponse:
        gw = gateway(request)
        account = me.claims.sub
        queue = gw.feed.subscribe(account)
        gw.metrics_stream(+1)

        async def stream() -> Any:
            try:
                yield "retry: 3000\n: connected\n\n"
                while True:
                    remaining = me.claims.exp - gw.clock()
                    if remaining <= 0:
                        yield sse_event("end", {"reason": "token_expired"})
                        return
                    try:
                        item = await asyncio.wait_for(
                            queue.get(), min(gw.settings.sse_keepalive_s, remaining))
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if isinstance(item, str):
                        yield sse_event("end", {"reason": item})
                        return
                    yield sse_event("notification", item.model_dump(mode="json"),
                               event_id=f"{item.notification_id}:{item.status}:"
                                        f"{item.attempts}")
            finally:
                gw.feed.unsubscribe(account, queue)
                gw.metrics_stream(-1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return r
