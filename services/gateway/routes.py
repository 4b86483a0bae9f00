"""The HTTP API: every route in one table-like module. A route checks what the gateway can
check (the access token, the Idempotency-Key, the per-address rate limit, the body), builds
the service's command or query, and answers with the service's reply or a problem document.

What the gateway owns and the client never sends: ``request_id`` (the ``Idempotency-Key``),
the account (the token's ``sub``), the client's address and device (the connection or a
trusted proxy's ``X-Forwarded-For``, and ``User-Agent``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts import access, auth, notify, transit, wallet
from contracts.auth import AccessTokenClaims
from contracts.envelope import CommandAccepted, ContractModel, ErrorReply, Reply
from contracts.integrations import FoodCategory
from contracts.money import Kopecks, PositiveKopecks
from contracts.types import (
    ContractNumber,
    Email,
    GuardianRole,
    Identifier,
    LocalDate,
    Locale,
    LocalTime,
    Phone,
    Secret,
    SubBalance,
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


@dataclass(frozen=True)
class Client:
    ip: str
    device: str


def client(request: Request) -> Client:
    """The caller's address and device: set here, never read from a body."""
    gw = gateway(request)
    peer = request.client.host if request.client else ""
    address = gw.client_address(peer, request.headers.get("x-forwarded-for", ""))
    return Client(ip=address[:64], device=request.headers.get("user-agent", "")[:120])


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
                           errors=_errors(exc.errors(include_input=False,
                                                     include_url=False))) from None


def _errors(errors: Any) -> list[dict[str, Any]]:
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


# --- request bodies (what the client may say) -----------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegistrationBody(Body):
    phone: Phone
    contract: ContractNumber
    password: Secret = Field(description="8-128 characters; never logged.")
    consent: bool = Field(description="Consent to the terms; must be true.")
    email: Email | None = None
    locale: Locale = Locale.RU


class ConfirmRegistrationBody(Body):
    phone: Phone
    code: Secret = Field(description="The 6-digit code from the SMS.")


class ResendCodeBody(Body):
    phone: Phone
    purpose: Literal["registration", "password_reset"] = "registration"


class PasswordResetBody(Body):
    phone: Phone


class ConfirmPasswordResetBody(Body):
    phone: Phone
    code: Secret
    new_password: Secret


class ChangePasswordBody(Body):
    current_password: Secret
    new_password: Secret


class LoginBody(Body):
    login: str = Field(max_length=254, description="Phone (E.164 or local) or e-mail.",
                       examples=["+79121234567"])
    password: Secret
    totp: Secret | None = Field(default=None, description="The authenticator app's current "
                                "code, once a second factor is enrolled.")


class RefreshBody(Body):
    refresh_token: Secret


class LinkChildBody(Body):
    contract: ContractNumber
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                   examples=["2014-03-08"])
    activation_code: Secret | None = None


class ControlsBody(Body):
    """Fields left out are unchanged."""

    daily_limits: wallet.DailyLimits | None = None
    blocked_categories: list[FoodCategory] | None = None
    blocked_items: list[Identifier] | None = None
    allergens: list[str] | None = None
    low_balance_threshold: Kopecks | None = None


class AutoTopUpBody(Body):
    enabled: bool
    threshold: Kopecks = 0
    amount: Kopecks = 0
    sub_balance: SubBalance = SubBalance.CANTEEN


class TransferBody(Body):
    from_sub_balance: SubBalance
    to_sub_balance: SubBalance
    amount: PositiveKopecks


class BlockBody(Body):
    reason: str = Field(default="lost", max_length=64, examples=["lost"])


class DisputeBody(Body):
    operation_id: Identifier = Field(description="The statement line's operation id (a sale "
                                     "or a ride).")
    line: int | None = Field(default=None, ge=0, description="Sale line index (0-based).")
    comment: str = Field(default="", max_length=500)


class TagsBody(Body):
    tags: list[wallet.StatementTag] = Field(max_length=5, description="At most 5 tags (up to "
                                            "32 letters, digits, _, - or spaces; # optional); "
                                            "[] clears them.", examples=[["обеды"]])


class TemplateBody(Body):
    name: str = Field(min_length=1, max_length=40, examples=["Обеды на неделю"])
    amount: PositiveKopecks
    sub_balance: SubBalance = SubBalance.CANTEEN


class PreferencesBody(Body):
    channels: dict[str, list[notify.Channel]] | None = None
    quiet_from: LocalTime | None = None
    quiet_to: LocalTime | None = None
    daily_digest: bool | None = None


class PushTokenBody(Body):
    token: Secret
    platform: Literal["android", "ios"] = "android"


class ChildSummary(BaseModel):
    contract: ContractNumber
    role: GuardianRole
    balances: wallet.Balances | None = Field(default=None, description="None when the balance "
                                             "could not be read (see problem).")
    blocked: bool = False
    problem: problems.Problem | None = None


class Children(BaseModel):
    children: list[ChildSummary]


# --- the routes --------------------------------------------------------------------------------

def _auth_routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["account"])

    @r.post("/registrations", response_model=auth.RegistrationStarted, status_code=202,
            responses=PUBLIC, dependencies=[limited("registration")],
            summary="Start a parent registration (an SMS code follows)")
    async def start_registration(request: Request, body: RegistrationBody,
                                 key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.StartRegistration, request_id=key, **_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/registrations/confirm", response_model=auth.CommandCompleted, responses=PUBLIC,
            dependencies=[limited("registration")],
            summary="Confirm the registration with the SMS code")
    async def confirm_registration(request: Request, body: ConfirmRegistrationBody,
                                   key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmRegistration, request_id=key, **_fields(body))
        return await ask(gateway(request), message, body.phone, auth.CommandCompleted)

    @r.post("/codes/resend", response_model=auth.RegistrationStarted, responses=PUBLIC,
            dependencies=[limited("code_resend")],
            summary="Send the registration or password-reset code again")
    async def resend_code(request: Request, body: ResendCodeBody,
                          key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.ResendCode, request_id=key, **_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/password-resets", response_model=auth.RegistrationStarted, responses=PUBLIC,
            dependencies=[limited("password_reset")],
            summary="Ask for a password-reset code by SMS")
    async def request_password_reset(request: Request, body: PasswordResetBody,
                                     key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.RequestPasswordReset, request_id=key, **_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/password-resets/confirm", response_model=auth.CommandCompleted,
            responses=PUBLIC, dependencies=[limited("password_reset")],
            summary="Set a new password with the reset code")
    async def confirm_password_reset(request: Request, body: ConfirmPasswordResetBody,
                                     key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmPasswordReset, request_id=key, **_fields(body))
        return await ask(gateway(request), message, body.phone, auth.CommandCompleted)

    @r.post("/sessions", response_model=auth.SessionTokens, responses=PUBLIC,
            dependencies=[limited("login")], summary="Log in (with the TOTP code once "
            "enrolled); the address and device are the gateway's")
    async def login(request: Request, body: LoginBody, key: Key,
                    who: Who) -> auth.SessionTokens:
        message = build_message(auth.Login, request_id=key, ip=who.ip, device=who.device,
                                **_fields(body))
        return await ask(gateway(request), message, body.login, auth.SessionTokens)

    @r.post("/sessions/refresh", response_model=auth.SessionTokens, responses=PUBLIC,
            summary="Renew the access token (the refresh token rotates)")
    async def refresh(request: Request, body: RefreshBody, key: Key) -> auth.SessionTokens:
        message = build_message(auth.RefreshSession, request_id=key, **_fields(body))
        return await ask(gateway(request), message, key, auth.SessionTokens)

    @r.get("/sessions", response_model=auth.SessionsReply, responses=AUTHED,
           summary="The account's active sessions")
    async def list_sessions(request: Request, me: Auth) -> auth.SessionsReply:
        return await ask(gateway(request), auth.ListSessions(), me.claims.sub,
                         auth.SessionsReply, token=me.token)

    @r.delete("/sessions/current", response_model=auth.CommandCompleted, responses=MUTATING,
              summary="Log out of this session")
    async def logout(request: Request, me: Auth, key: Key) -> auth.CommandCompleted:
        return await ask(gateway(request), auth.Logout(request_id=key), me.claims.sub,
                         auth.CommandCompleted, token=me.token)

    @r.delete("/sessions", response_model=auth.CommandCompleted, responses=MUTATING,
              summary="Log out everywhere (every session of the account ends)")
    async def logout_everywhere(request: Request, me: Auth,
                                key: Key) -> auth.CommandCompleted:
        return await ask(gateway(request), auth.Logout(request_id=key, everywhere=True),
                         me.claims.sub, auth.CommandCompleted, token=me.token)

    @r.get("/login-history", response_model=auth.LoginHistoryReply, responses=AUTHED,
           summary="Recent login attempts of the account")
    async def login_history(request: Request, me: Auth,
                            limit: Annotated[int, Query(ge=1, le=200)] = 20
                            ) -> auth.LoginHistoryReply:
        return await ask(gateway(request), auth.GetLoginHistory(limit=limit), me.claims.sub,
                         auth.LoginHistoryReply, token=me.token)

    @r.post("/password", response_model=auth.CommandCompleted, responses=MUTATING,
            summary="Change the password (the current one is required; every session ends)")
    async def change_password(request: Request, body: ChangePasswordBody, me: Auth,
                              key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ChangePassword, request_id=key, **_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    return r


def _children_routes() -> APIRouter:
    r = APIRouter(prefix="/v1/children", tags=["children"])

    @r.post("", response_model=auth.SessionTokens, responses=MUTATING,
            summary="Link a child (contract + birth date, or an activation code); the reply "
            "carries an access token that includes the child")
    async def link_child(request: Request, body: LinkChildBody, me: Auth,
                         key: Key) -> auth.SessionTokens:
        message = build_message(auth.LinkChild, request_id=key, **_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.SessionTokens,
                         token=me.token)

    @r.get("", response_model=Children, responses=AUTHED,
           summary="The token's children with their balances")
    async def children(request: Request, me: Auth) -> Children:
        gw = gateway(request)

        async def one(grant: auth.ChildGrant) -> ChildSummary:
            try:
                reply = await ask(gw, wallet.GetBalance(contract=grant.contract),
                                  grant.contract, wallet.BalanceReply, token=me.token)
            except ProblemError as exc:
                return ChildSummary(contract=grant.contract, role=grant.role,
                                    problem=_problem(exc))
            return ChildSummary(contract=grant.contract, role=grant.role,
                                balances=reply.balances, blocked=reply.blocked)

        return Children(children=list(await asyncio.gather(*map(one, me.claims.children))))

    @r.get("/{contract}/balance", response_model=wallet.BalanceReply, responses=AUTHED,
           summary="A child's balances")
    async def balance(request: Request, contract: Contract, me: Auth) -> wallet.BalanceReply:
        return await ask(gateway(request), wallet.GetBalance(contract=contract), contract,
                         wallet.BalanceReply, token=me.token)

    @r.get("/{contract}/statement", response_model=wallet.StatementReply, responses={
        **AUTHED, 200: {"content": {"application/json": {}, "text/csv": {}},
                        "description": "The statement page (JSON, or CSV with format=csv; "
                        "the next page's cursor is in X-Next-Cursor)."}},
        summary="A child's statement, filtered; as CSV with format=csv")
    async def statement(request: Request, contract: Contract, me: Auth,
                        date_from: LocalDate | None = None, date_to: LocalDate | None = None,
                        kinds: Annotated[list[str] | None, Query(description="topup, sale, "
                                                                 "fare, refund, transfer, "
                                                                 "bonus, reissue")] = None,
                        status: str | None = None,
                        text: Annotated[str | None, Query(
                            max_length=100, description="Lines whose note, operation id or an "
                            "item's name contains it (any case)")] = None,
                        tag: Annotated[str | None, Query(
                            max_length=33, description="Lines carrying this tag")] = None,
                        amount_min: Annotated[int | None, Query(
                            ge=0, description="Amount at least, kopecks, the sign aside")] = None,
                        amount_max: Annotated[int | None, Query(
                            ge=0, description="Amount at most, kopecks, the sign aside")] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100,
                        cursor: Annotated[str | None, Query(max_length=512)] = None,
                        format: Literal["json", "csv"] = "json") -> Any:
        query = build_message(wallet.GetStatement, contract=contract, date_from=date_from,
                              date_to=date_to, kinds=kinds, status=status, text=text, tag=tag,
                              amount_min=amount_min, amount_max=amount_max,
                              csv=format == "csv", limit=limit, cursor=cursor)
        reply = await ask(gateway(request), query, contract, wallet.StatementReply,
                          token=me.token)
        if format == "csv":
            return _csv(reply.csv or "", reply.next_cursor, f"statement-{contract}.csv")
        return reply

    @r.put("/{contract}/statement/{operation_id}/tags", response_model=CommandAcceptedModel,
           responses=MUTATING, summary="Tag a statement line (replaces its tags; [] clears)")
    async def tag_line(request: Request, contract: Contract, operation_id: Identifier,
                       body: TagsBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.TagStatementLine, request_id=key, contract=contract,
                                operation_id=operation_id, tags=body.tags)
        return await _command(request, message, contract, me)

    @r.get("/{contract}/top-up-templates", response_model=wallet.TopUpTemplatesReply,
           responses=AUTHED, summary="The child's saved top-up templates")
    async def templates(request: Request, contract: Contract,
                        me: Auth) -> wallet.TopUpTemplatesReply:
        return await ask(gateway(request), wallet.GetTopUpTemplates(contract=contract),
                         contract, wallet.TopUpTemplatesReply, token=me.token)

    @r.post("/{contract}/top-up-templates", response_model=CommandAcceptedModel,
            responses=MUTATING, summary="Save a top-up template (at most 10 per child); its id "
            "is the Idempotency-Key")
    async def new_template(request: Request, contract: Contract, body: TemplateBody,
                           me: Auth, key: Key) -> Any:
        message = build_message(wallet.SaveTopUpTemplate, request_id=key, contract=contract,
                                **_fields(body))
        return await _command(request, message, contract, me)

    @r.put("/{contract}/top-up-templates/{template_id}", response_model=CommandAcceptedModel,
           responses=MUTATING, summary="Change a saved top-up template")
    async def change_template(request: Request, contract: Contract, template_id: Identifier,
                              body: TemplateBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.SaveTopUpTemplate, request_id=key, contract=contract,
                                template_id=template_id, **_fields(body))
        return await _command(request, message, contract, me)

    @r.delete("/{contract}/top-up-templates/{template_id}",
              response_model=CommandAcceptedModel, responses=MUTATING,
              summary="Delete a saved top-up template")
    async def delete_template(request: Request, contract: Contract, template_id: Identifier,
                              me: Auth, key: Key) -> Any:
        message = build_message(wallet.DeleteTopUpTemplate, request_id=key, contract=contract,
                                template_id=template_id)
        return await _command(request, message, contract, me)

    @r.patch("/{contract}/controls", response_model=CommandAcceptedModel, responses=MUTATING,
             summary="Parent controls: daily limits, blocked categories and items, allergens, "
             "low-balance threshold (primary guardian)")
    async def controls(request: Request, contract: Contract, body: ControlsBody, me: Auth,
                       key: Key) -> Any:
        message = build_message(wallet.SetControls, request_id=key, contract=contract,
                                **_fields(body))
        return await _command(request, message, contract, me)

    @r.put("/{contract}/auto-top-up", response_model=CommandAcceptedModel, responses=MUTATING,
           summary="Auto top-up: below a threshold, ask the payment integrator for an amount")
    async def auto_top_up(request: Request, contract: Contract, body: AutoTopUpBody,
                          me: Auth, key: Key) -> Any:
        message = build_message(wallet.SetAutoTopUp, request_id=key, contract=contract,
                                **_fields(body))
        return await _command(request, message, contract, me)

    @r.post("/{contract}/transfers", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Move money between sub-balances (primary guardian)")
    async def transfer(request: Request, contract: Contract, body: TransferBody, me: Auth,
                       key: Key) -> Any:
        message = build_message(wallet.MoveMoney, request_id=key, contract=contract,
                                **_fields(body))
        return await _command(request, message, contract, me)

    @r.post("/{contract}/block", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Block a lost card (the balance is kept)")
    async def block(request: Request, contract: Contract, me: Auth, key: Key,
                    body: BlockBody | None = None) -> Any:
        message = build_message(wallet.BlockCard, request_id=key, contract=contract,
                                reason=(body or BlockBody()).reason)
        return await _command(request, message, contract, me)

    @r.post("/{contract}/unblock", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Unblock the card")
    async def unblock(request: Request, contract: Contract, me: Auth, key: Key) -> Any:
        message = build_message(wallet.UnblockCard, request_id=key, contract=contract)
        return await _command(request, message, contract, me)

    @r.post("/{contract}/disputes", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Dispute a statement line (a sale line or a ride)")
    async def dispute(request: Request, contract: Contract, body: DisputeBody, me: Auth,
                      key: Key) -> Any:
        message = build_message(wallet.OpenDispute, request_id=key, contract=contract,
                                **_fields(body))
        return await _command(request, message, contract, me)

    @r.get("/{contract}/rides", response_model=transit.RidesReply, responses={
        **AUTHED, 200: {"content": {"application/json": {}, "text/csv": {}},
                        "description": "Rides (JSON, or CSV with format=csv)."}},
        summary="A child's rides with fare and explanation")
    async def rides(request: Request, contract: Contract, me: Auth,
                    date_from: LocalDate | None = None, date_to: LocalDate | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    cursor: Annotated[str | None, Query(max_length=512)] = None,
                    format: Literal["json", "csv"] = "json") -> Any:
        query = build_message(transit.GetRides, contract=contract, date_from=date_from,
                              date_to=date_to, csv=format == "csv", limit=limit, cursor=cursor)
        reply = await ask(gateway(request), query, contract, transit.RidesReply,
                          token=me.token)
        if format == "csv":
            return _csv(reply.csv or "", reply.next_cursor, f"rides-{contract}.csv")
        return reply

    @r.get("/{contract}/journey", response_model=notify.JourneyReply, responses=AUTHED,
           summary="The journey to school of one day: rides, gate passages, purchases")
    async def journey(request: Request, contract: Contract, me: Auth,
                      date: LocalDate) -> notify.JourneyReply:
        query = build_message(notify.GetJourney, contract=contract, date=date)
        return await ask(gateway(request), query, contract, notify.JourneyReply,
                         token=me.token)

    @r.get("/{contract}/attendance", response_model=access.StudentStatsReply,
           responses=AUTHED, summary="Attendance statistics of a period (with an SVG chart "
           "and CSV on request)")
    async def attendance(request: Request, contract: Contract, me: Auth,
                         date_from: LocalDate, date_to: LocalDate, chart: bool = False,
                         csv: bool = False, by_month: Annotated[bool, Query(
                             description="Also one line per month of the period, each with "
                             "its absent days (at most 366 days)")] = False
                         ) -> access.StudentStatsReply:
        query = build_message(access.GetStudentStats, contract=contract, date_from=date_from,
                              date_to=date_to, chart=chart, csv=csv, by_month=by_month)
        return await ask(gateway(request), query, contract, access.StudentStatsReply,
                         token=me.token)

    @r.get("/{contract}/entries", response_model=access.EntryLogReply, responses=AUTHED,
           summary="The entry log of a period (at most 366 days): each day's entries and exits, "
           "absent days included, in pages of days")
    async def entry_log(request: Request, contract: Contract, me: Auth,
                        date_from: LocalDate, date_to: LocalDate,
                        limit: Annotated[int, Query(ge=1, le=100)] = 31,
                        cursor: Annotated[str | None, Query(max_length=512)] = None
                        ) -> access.EntryLogReply:
        query = build_message(access.GetEntryLog, contract=contract, date_from=date_from,
                              date_to=date_to, limit=limit, cursor=cursor)
        return await ask(gateway(request), query, contract, access.EntryLogReply,
                         token=me.token)

    @r.get("/{contract}/attendance/chart.svg", responses={
        **AUTHED, 200: {"content": {"image/svg+xml": {}}, "description": "The chart."}},
        response_class=Response, summary="The arrival-time chart of a period as SVG")
    async def attendance_chart(request: Request, contract: Contract, me: Auth,
                               date_from: LocalDate, date_to: LocalDate) -> Response:
        query = build_message(access.GetStudentStats, contract=contract, date_from=date_from,
                              date_to=date_to, chart=True)
        reply = await ask(gateway(request), query, contract, access.StudentStatsReply,
                          token=me.token)
        return Response(reply.chart_svg or "", media_type="image/svg+xml")

    return r


def _notification_routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["notifications"])

    @r.patch("/notifications/preferences", response_model=CommandAcceptedModel,
             responses=MUTATING, summary="Channels per notification kind, quiet hours, digest")
    async def preferences(request: Request, body: PreferencesBody, me: Auth,
                          key: Key) -> Any:
        message = build_message(notify.SetPreferences, request_id=key,
                                account_id=me.claims.sub, **_fields(body))
        return await _command(request, message, me.claims.sub, me)

    @r.get("/notifications", response_model=notify.JournalReply, responses=AUTHED,
           summary="The notification journal, most recent first")
    async def journal(request: Request, me: Auth,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50,
                      cursor: Annotated[str | None, Query(max_length=512)] = None
                      ) -> notify.JournalReply:
        query = build_message(notify.GetJournal, account_id=me.claims.sub, limit=limit,
                              cursor=cursor)
        return await ask(gateway(request), query, me.claims.sub, notify.JournalReply,
                         token=me.token)

    @r.post("/push-tokens", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Register this device's push token")
    async def push_token(request: Request, body: PushTokenBody, me: Auth, key: Key) -> Any:
        message = build_message(notify.RegisterPushToken, request_id=key,
                                account_id=me.claims.sub, **_fields(body))
        return await _command(request, message, me.claims.sub, me)

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
                        yield _sse("end", {"reason": "token_expired"})
                        return
                    try:
                        item = await asyncio.wait_for(
                            queue.get(), min(gw.settings.sse_keepalive_s, remaining))
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if isinstance(item, str):
                        yield _sse("end", {"reason": item})
                        return
                    yield _sse("notification", item.model_dump(mode="json"),
                               event_id=f"{item.notification_id}:{item.status}:"
                                        f"{item.attempts}")
            finally:
                gw.feed.unsubscribe(account, queue)
                gw.metrics_stream(-1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    return r


class CommandAcceptedModel(BaseModel):
    """The reply of a service to a command it applied, or had applied before (a retry with
    the same Idempotency-Key)."""

    ok: bool = True
    request_id: Identifier


async def _command(request: Request, message: ContractModel, key: str, me: Caller) -> Any:
    reply = await ask(gateway(request), message, key, CommandAccepted, token=me.token)
    return CommandAcceptedModel(request_id=reply.request_id)


def _fields(body: BaseModel) -> dict[str, Any]:
    """A body's fields as given (secrets stay SecretStr: the contract keeps them masked)."""
    return {name: getattr(body, name) for name in type(body).model_fields}


def _csv(text: str, next_cursor: str | None, filename: str) -> PlainTextResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8", headers=headers)


def _sse(event: str, data: dict[str, Any], *, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _problem(exc: ProblemError) -> problems.Problem:
    return problems.Problem(type=problems.TYPE_BASE + exc.code, title=exc.code,
                            status=exc.status, detail=exc.detail, code=exc.code)


# --- the application ---------------------------------------------------------------------------

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
    api.include_router(_auth_routes())
    api.include_router(_children_routes())
    api.include_router(_notification_routes())

    @api.exception_handler(ProblemError)
    async def on_problem(_: Request, exc: ProblemError) -> Response:
        return problems.response(exc)

    @api.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> Response:
        return problems.response(ProblemError("validation_error", "the request is not "
                                              "valid", errors=_errors(exc.errors())))

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
