"""The HTTP API: one module per area (account, children, notifications, money, support,
family, staff) on the shared dependencies of ``common``. A route checks what the gateway can
check (the access token, the Idempotency-Key, the per-address rate limit, the body), builds
the service's command or query, and answers with the service's reply or a problem document.

What the gateway owns and the client never sends: ``request_id`` (the ``Idempotency-Key``),
the account (the token's ``sub``), the client's address and device (the connection or a
trusted proxy's ``X-Forwarded-For``, and ``User-Agent``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.gateway import problems
from services.gateway.problems import ProblemError
from services.gateway.routes import (
    account,
    cards,
    children,
    devices,
    family,
    money,
    notifications,
    staff,
    support,
)
from services.gateway.routes.common import client_address, log, safe_errors

__all__ = ["build", "client_address"]


def build() -> FastAPI:
    """The FastAPI application (routes, problem handlers); the running ``Gateway`` is set on
    ``app.state.gateway``. Building it needs no settings, so ``make docs`` can write the
    OpenAPI document."""
    api = FastAPI(
        title="SchoolCard gateway", version="1.0.0", openapi_url="/openapi.json",
        description="The one HTTP door for apps (the parents' cabinet). Each call becomes a "
        "service's command or query on Kafka with the caller's bearer token; errors are RFC "
        "9457 problem documents (application/problem+json) carrying the services' error "
        "`code`. Calls that change something need an `Idempotency-Key` header. Money is "
        "integer kopecks.")
    api.include_router(account.routes())
    api.include_router(children.routes())
    api.include_router(notifications.routes())
    api.include_router(money.routes())
    api.include_router(support.routes())
    api.include_router(family.routes())
    api.include_router(staff.routes())
    api.include_router(cards.routes())
    api.include_router(devices.routes())

    @api.exception_handler(ProblemError)
    async def on_problem(_: Request, exc: ProblemError) -> Response:
        return problems.response(exc)

    @api.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> Response:
        return problems.response(ProblemError("validation_error", "the request is not "
                                              "valid", errors=safe_errors(exc.errors())))

    @api.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                 "bad_request")
        return problems.response(ProblemError(code, str(exc.detail), status=exc.status_code))

    @api.exception_handler(Exception)
    async def on_error(_: Request, exc: Exception) -> Response:
        log.exception("request failed", error=type(exc).__name__)
        return problems.response(ProblemError("internal_error", "the gateway failed; "
                                              "retry with the same Idempotency-Key",
                                              status=500))

    return api


