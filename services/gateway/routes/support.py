"""Help: the FAQ (content, no login) and support requests (notify owns them: it owns the
messages to and from parents)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts import notify
from contracts.types import AccountId, ContractNumber, SchoolId
from services.gateway.problems import documented
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

FAQ_FILE = "faq.ru.json"
TicketId = Annotated[str, Path(max_length=128, description="The request's ticket_id.")]


class FaqItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(max_length=64, pattern=r"^[a-z0-9-]+$", description="Stable anchor.",
                    examples=["lost-card"])
    question: str = Field(max_length=300, examples=["Ребёнок потерял карту. Как быть?"])
    answer: str = Field(max_length=2000, examples=["Сразу заблокируйте карту в кабинете."])


class FaqSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: notify.SupportTopic = Field(description="The support topic the section is about "
                                       "(the same words as a support request's topic).",
                                       examples=["card"])
    title: str = Field(max_length=120, examples=["Карта"])
    items: list[FaqItem] = Field(min_length=1, max_length=50)


class Faq(BaseModel):
    """The FAQ: questions and answers by topic, versioned (``version`` changes with every
    edit of the file, so an app may cache it by version)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(max_length=32, examples=["2026-12-04.1"])
    language: str = Field(max_length=8, examples=["ru"])
    sections: list[FaqSection] = Field(min_length=1, max_length=30)


@cache
def faq() -> Faq:
    """The FAQ file shipped with the gateway, validated once (a broken file fails the first
    request and the unit test, never half-served)."""
    text = resources.files("services.gateway").joinpath("content", FAQ_FILE).read_text("utf-8")
    return Faq.model_validate_json(text)


class OpenRequestBody(Body):
    topic: notify.SupportTopic
    text: str = Field(min_length=1, max_length=2000)
    contract: ContractNumber | None = None
    school_id: SchoolId | None = None


class AnswerBody(Body):
    text: str = Field(min_length=1, max_length=2000)
    close: bool = False


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["support"])

    @r.get("/faq", response_model=Faq, responses=documented(500),
           summary="Questions and answers (no login); cache by version")
    async def read_faq() -> JSONResponse:
        document = faq()
        return JSONResponse(document.model_dump(mode="json"),
                            headers={"Cache-Control": "public, max-age=3600",
                                     "ETag": f'"{document.version}"'})

    @r.post("/support/requests", response_model=notify.SupportRequestReply, status_code=201,
            responses=MUTATING, summary="Write to support (a topic, the question, optionally "
            "the child)")
    async def open_request(request: Request, body: OpenRequestBody, me: Auth,
                           key: Key) -> notify.SupportRequestReply:
        message = build_message(notify.OpenSupportRequest, request_id=key,
                                account_id=me.claims.sub, topic=body.topic, text=body.text,
                                contract=body.contract, school_id=body.school_id)
        return await ask(gateway(request), message, me.claims.sub,
                         notify.SupportRequestReply, token=me.token)

    @r.get("/support/requests", response_model=notify.SupportRequestsReply, responses=AUTHED,
           summary="A parent's own requests; for support and school admins, their queue")
    async def list_requests(request: Request, me: Auth,
                            status: notify.SupportStatus | None = None,
                            account_id: AccountId | None = None,
                            limit: Annotated[int, Query(ge=1, le=200)] = 50
                            ) -> notify.SupportRequestsReply:
        own = me.claims.sub if me.claims.role.value == "parent" else account_id
        query = build_message(notify.GetSupportRequests, account_id=own, status=status,
                              limit=limit)
        return await ask(gateway(request), query, own or me.claims.sub,
                         notify.SupportRequestsReply, token=me.token)

    @r.get("/support/requests/{ticket_id}", response_model=notify.SupportRequestReply,
           responses=AUTHED, summary="One request: status and thread")
    async def read_request(request: Request, ticket_id: TicketId,
                           me: Auth) -> notify.SupportRequestReply:
        query = build_message(notify.GetSupportRequest, ticket_id=ticket_id)
        return await ask(gateway(request), query, ticket_id, notify.SupportRequestReply,
                         token=me.token)

    @r.post("/support/requests/{ticket_id}/answers", response_model=notify.SupportRequestReply,
            responses=MUTATING, summary="Answer a request (support, the school's admin); "
            "the parent is notified")
    async def answer_request(request: Request, ticket_id: TicketId, body: AnswerBody,
                             me: Auth, key: Key) -> notify.SupportRequestReply:
        message = build_message(notify.AnswerSupportRequest, request_id=key,
                                ticket_id=ticket_id, text=body.text, close=body.close)
        return await ask(gateway(request), message, ticket_id, notify.SupportRequestReply,
                         token=me.token)

    @r.post("/support/requests/{ticket_id}/close", response_model=notify.SupportRequestReply,
            responses=MUTATING, summary="Close a request (its parent, or staff)")
    async def close_request(request: Request, ticket_id: TicketId, me: Auth,
                            key: Key) -> notify.SupportRequestReply:
        message = build_message(notify.CloseSupportRequest, request_id=key,
                                ticket_id=ticket_id)
        return await ask(gateway(request), message, ticket_id, notify.SupportRequestReply,
                         token=me.token)

    return r
