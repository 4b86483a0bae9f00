"""What every route may need: the caller's token, the Idempotency-Key, the client's address
and device, the per-address rate limit, sending a command or query and reading its reply, and
the shapes of answers (problems, CSV, SSE)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.auth import AccessTokenClaims
from contracts.envelope import CommandAccepted, ContractModel, ErrorReply, Reply
from contracts.types import (
    ContractNumber,
    Identifier,
)
from services.gateway import problems
from services.gateway.kafka import BadReply, GatewayStopping, ReplyTimeout
from services.gateway.problems import ProblemError, documented
from services.runtime.logs import get_logger
from services.runtime.tokens import TokenError, verify_access_token

if TYPE_CHECKING:
    from services.gateway.app import Gateway


log = get_logger("schoolcard.gateway.routes")

R = TypeVar("R", bound=Reply)

IDEMPOTENCY_KEY_DOC = ("Required on every call that changes something: 16-128 characters of "
                       "letters, digits and . _ : - (a UUID). It becomes the command's "
                       "request_id, so a retried call (same key) is applied once and answered "
                       "the same; a key reused for another command is refused (409).")
MIN_KEY = 16


# --- what every route may need -----------------------------------------------------------------

def gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


_bearer = HTTPBearer(auto_error=False, description="The access token from POST /v1/sessions "
                     "(5-minute lifetime; renew with POST /v1/sessions/refresh).")


@dataclass(frozen=True)
class Caller:
    token: str
    claims: AccessTokenClaims


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                                     Depends(_bearer)]) -> Caller:
    """The verified access token (401 problem without a valid one: no service is asked)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError("unauthenticated", "an Authorization: Bearer <access token> header "
                           "is required")
    gw = gateway(request)
    try:
        claims = verify_access_token(credentials.credentials,
                                     gw.settings.infra.verification_keys(), audience="gateway",
                                     now=gw.clock())
    except TokenError as exc:
        raise ProblemError(exc.code, str(exc)) from None
    return Caller(credentials.credentials, claims)


def idempotency_key(key: Annotated[str | None, Header(alias="Idempotency-Key",
                                                      description=IDEMPOTENCY_KEY_DOC)] = None
                    ) -> str:
    if key is None:
        raise ProblemError("idempotency_key_required", "this call changes something: send an "
                           "Idempotency-Key header (a UUID), the same one when you retry it")
    try:
        _KeyCheck(key=key)
    except ValidationError:
        raise ProblemError("invalid_idempotency_key", IDEMPOTENCY_KEY_DOC) from None
    return key


class _KeyCheck(BaseModel):
    key: Annotated[Identifier, Field(min_length=MIN_KEY)]


DEVICE_TOKEN_HEADER = "x-device-token"
DEVICE_TOKEN_COOKIE = "schoolcard_device"


@dataclass(frozen=True)
class Client:
    ip: str
    device: str
    device_token: str | None = field(default=None, repr=False)


def client(request: Request) -> Client:
    """The caller's address and device, set here and never read from a body; the device token
    of an earlier login (``X-Device-Token`` header, else the ``schoolcard_device`` cookie)."""
    gw = gateway(request)
    peer = request.client.host if request.client else ""
    address = gw.client_address(peer, request.headers.get("x-forwarded-for", ""))
    token = (request.headers.get(DEVICE_TOKEN_HEADER)
             or request.cookies.get(DEVICE_TOKEN_COOKIE) or "")[:1024]
    return Client(ip=address[:64], device=request.headers.get("user-agent", "")[:120],
                  device_token=token or None)


def limited(kind: str) -> Any:
    """A dependency that spends one token of ``kind`` from the caller's address (429 when the
    bucket is empty)."""

    def check(request: Request, who: Annotated[Client, Depends(client)]) -> None:
        gw = gateway(request)
        wait = gw.limiter.take(kind, who.ip)
        if wait > 0:
            gw.metrics_rate_limited(kind)
            raise ProblemError("rate_limited", f"too many {kind} calls from this address",
                               retry_after=gw.limiter.retry_after(wait))

    return Depends(check)


async def ask(gw: Gateway, message: ContractModel, key: str, expect: type[R], *,
              token: str | None = None) -> R:
    """Send ``message`` and return its reply, or raise the problem it amounts to."""
    try:
        reply = await gw.requests.request(message, key, token=token,
                                          timeout=gw.settings.request_timeout_s)
    except GatewayStopping as exc:
        raise ProblemError("gateway_stopping", str(exc), retry_after=1) from None
    except ReplyTimeout as exc:
        raise ProblemError("reply_timeout", str(exc)) from None
    except BadReply as exc:
        raise ProblemError("bad_reply", str(exc)) from None
    if isinstance(reply, Reply) and (not reply.ok or isinstance(reply, ErrorReply)):
        error = reply.error
        raise ProblemError(error.code if error else "request_failed",
                           error.message if error else "the service refused the request")
    if not isinstance(reply, expect):
        raise ProblemError("bad_reply", f"expected {expect.__name__}, got "
                           f"{type(reply).__name__}")
    return reply


def build_message(model: type[ContractModel], **fields: Any) -> Any:
    """The contract message, or a 422 problem naming the invalid fields."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise ProblemError("validation_error", "the request does not fit the contract",
                           errors=safe_errors(exc.errors(include_input=False,
                                                     include_url=False))) from None


def safe_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the values given (they may be passwords or codes)."""
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in errors]


Auth = Annotated[Caller, Depends(caller)]
Key = Annotated[str, Depends(idempotency_key)]
Who = Annotated[Client, Depends(client)]
Contract = Annotated[ContractNumber, "the child's contract number (8 digits)"]

# Every call a service answers may also be 502 (an unreadable reply), 503 (the gateway is
# stopping) or 504 (no reply in time). Commands may meet auth's throttles (a wrong birth date
# or password too often: 429); a login may meet an account that is not active (403) and a
# reset an unknown one (404).
AUTHED = documented(401, 403, 404, 422, 502, 503, 504)
MUTATING = documented(400, 401, 403, 404, 409, 422, 429, 502, 503, 504)
PUBLIC = documented(400, 401, 403, 404, 409, 422, 429, 502, 503, 504)



class Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommandAcceptedModel(BaseModel):
    """The reply of a service to a command it applied, or had applied before (a retry with
    the same Idempotency-Key)."""

    ok: bool = True
    request_id: Identifier


async def command(request: Request, message: ContractModel, key: str, me: Caller) -> Any:
    reply = await ask(gateway(request), message, key, CommandAccepted, token=me.token)
    return CommandAcceptedModel(request_id=reply.request_id)


def body_fields(body: BaseModel) -> dict[str, Any]:
    """A body's fields as given (secrets stay SecretStr: the contract keeps them masked)."""
    return {name: getattr(body, name) for name in type(body).model_fields}


def csv_response(text: str, next_cursor: str | None, filename: str) -> PlainTextResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8", headers=headers)


def sse_event(event: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def problem_of(exc: ProblemError) -> problems.Problem:
    return problems.Problem(type=problems.TYPE_BASE + exc.code, title=exc.code,
                            status=exc.status, detail=exc.detail, code=exc.code)


def client_address(peer: str, forwarded_for: str,
                   trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The client's address: the peer, or — when the peer is a trusted proxy — the last
    address of ``X-Forwarded-For`` that is not a trusted proxy (what a client writes in the
    header itself is never believed: it sits left of what the proxies appended)."""
    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not is_trusted(peer):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not is_trusted(hop):
            return hop
        peer = hop
    return peer
