"""Errors as RFC 9457 problem documents (``application/problem+json``): ``type``, ``title``,
``status``, ``detail``, plus ``code``, the services' machine-readable error code, unchanged.

A service's ``ErrorReply`` code decides the HTTP status (``status_for``): who you are 401, what
you may 403, what does not exist 404, a repeat that does not match 409, waiting helps 429 (with
``Retry-After``), anything else the request could not be applied 422.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:schoolcard:problem:"

_STATUS: dict[str, int] = {
    # who you are
    "unauthenticated": 401, "invalid_token": 401, "token_expired": 401,
    "invalid_credentials": 401, "refresh_token_invalid": 401, "refresh_token_reused": 401,
    "session_idle_expired": 401, "session_lifetime_expired": 401, "session_not_found": 401,
    "session_revoked": 401, "session_ended": 401,
    "second_factor_required": 401, "second_factor_invalid": 401,
    # what you may
    "forbidden": 403, "not_permitted": 403, "not_a_guardian": 403,
    "password_change_required": 403, "account_closed": 403, "account_not_active": 403,
    "wrong_account_kind": 403, "reauthentication_required": 403, "wrong_audience": 403,
    # waiting helps
    "rate_limited": 429, "login_rate_limited": 429, "login_delayed": 429,
    "code_rate_limited": 429, "child_proof_rate_limited": 429,
    # a repeat that does not match, or a state that forbids it
    "idempotency_conflict": 409, "idempotency_key_reused": 409, "already_guardian": 409,
    "contract_in_use": 409, "version_conflict": 409, "phone_taken": 409,
    "email_taken": 409,
    # the gateway's own
    "idempotency_key_required": 400, "invalid_idempotency_key": 400, "bad_request": 400,
    "not_found": 404, "method_not_allowed": 405, "validation_error": 422,
    "reply_timeout": 504, "gateway_stopping": 503, "bad_reply": 502, "reply_too_large": 502,
    "private_reply_topic_required": 502,
}
_TITLES: dict[int, str] = {
    400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 422: "Request not applied",
    429: "Too many requests", 500: "Internal error", 502: "Bad gateway",
    503: "Service unavailable", 504: "Gateway timeout",
}
_RETRY_AFTER = re.compile(r"Retry after (\d+) s")


def status_for(code: str) -> int:
    """The HTTP status of a service's error code."""
    if code in _STATUS:
        return _STATUS[code]
    if code.startswith("unknown_") or code.endswith("_not_found"):
        return 404
    if code.endswith("_conflict"):
        return 409
    if code.endswith("_rate_limited"):
        return 429
    return 422


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="URI of the problem type: urn:schoolcard:problem:<code>.",
                      examples=["urn:schoolcard:problem:forbidden"])
    title: str = Field(description="Short summary of the status.", examples=["Forbidden"])
    status: int = Field(description="The HTTP status code.", examples=[403])
    detail: str = Field(description="What went wrong, for a person; no personal data.",
                        examples=["not allowed to change_limits for this child"])
    code: str = Field(description="The machine-readable error code (a service's ErrorReply "
                      "code, or the gateway's own).", examples=["forbidden"])
    errors: list[dict[str, Any]] | None = Field(default=None, description="Invalid fields of "
                                                "the request (validation_error only).")


class ProblemError(Exception):
    """Raised by a route: answered as a problem document."""

    def __init__(self, code: str, detail: str, *, status: int | None = None,
                 retry_after: int | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status or status_for(code)
        if retry_after is None and self.status == 429:
            found = _RETRY_AFTER.search(detail)
            retry_after = int(found.group(1)) if found else 1
        self.retry_after = retry_after
        self.errors = errors


def response(exc: ProblemError) -> JSONResponse:
    body = Problem(type=TYPE_BASE + exc.code, title=_TITLES.get(exc.status, "Error"),
                   status=exc.status, detail=exc.detail, code=exc.code, errors=exc.errors)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="schoolcard"'
    return JSONResponse(body.model_dump(exclude_none=True), status_code=exc.status,
                        headers=headers, media_type=MEDIA_TYPE)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entry of the problems a route may answer."""
    return {s: {"model": Problem, "description": _TITLES.get(s, "Error"),
                "content": {MEDIA_TYPE: {}}} for s in statuses}
