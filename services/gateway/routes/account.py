"""Registration, login, sessions, passwords: the account's own calls."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from contracts import auth
from contracts.types import (
    ContractNumber,
    Email,
    Locale,
    Phone,
    Secret,
)

if TYPE_CHECKING:
    pass

from services.gateway.routes.common import (
    AUTHED,
    DEVICE_TOKEN_COOKIE,
    MUTATING,
    PUBLIC,
    Auth,
    Body,
    Key,
    Who,
    ask,
    body_fields,
    build_message,
    gateway,
    limited,
)


class RegistrationBody(Body):
    phone: Phone
    contract: ContractNumber
    password: Secret = Field(description="8-128 characters; never logged.")
    consent: bool = Field(description="Consent to the terms; must be true.")
    email: Email | None = None
    locale: Locale = Locale.RU
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                   description="The child's birth date: links the child once "
                                   "the phone is confirmed; or activation_code.",
                                   examples=["2014-03-08"])
    activation_code: Secret | None = None


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


DEVICE_COOKIE_MAX_AGE_S = 400 * 24 * 3600
"""The longest lifetime browsers keep a cookie (RFC 6265bis)."""


class RefreshBody(Body):
    refresh_token: Secret


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["account"])

    @r.post("/registrations", response_model=auth.RegistrationStarted, status_code=202,
            responses=PUBLIC, dependencies=[limited("registration")],
            summary="Start a parent registration (an SMS code follows)")
    async def start_registration(request: Request, body: RegistrationBody,
                                 key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.StartRegistration, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/registrations/confirm", response_model=auth.CommandCompleted, responses=PUBLIC,
            dependencies=[limited("registration")],
            summary="Confirm the registration with the SMS code")
    async def confirm_registration(request: Request, body: ConfirmRegistrationBody,
                                   key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmRegistration, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, body.phone, auth.CommandCompleted)

    @r.post("/codes/resend", response_model=auth.RegistrationStarted, responses=PUBLIC,
            dependencies=[limited("code_resend")],
            summary="Send the registration or password-reset code again")
    async def resend_code(request: Request, body: ResendCodeBody,
                          key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.ResendCode, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/password-resets", response_model=auth.RegistrationStarted, responses=PUBLIC,
            dependencies=[limited("password_reset")],
            summary="Ask for a password-reset code by SMS")
    async def request_password_reset(request: Request, body: PasswordResetBody,
                                     key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.RequestPasswordReset, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, body.phone, auth.RegistrationStarted)

    @r.post("/password-resets/confirm", response_model=auth.CommandCompleted,
            responses=PUBLIC, dependencies=[limited("password_reset")],
            summary="Set a new password with the reset code")
    async def confirm_password_reset(request: Request, body: ConfirmPasswordResetBody,
                                     key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmPasswordReset, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, body.phone, auth.CommandCompleted)

    @r.post("/sessions", response_model=auth.SessionTokens, responses=PUBLIC,
            dependencies=[limited("login")], summary="Log in (with the TOTP code once "
            "enrolled); the address and device are the gateway's, the device token comes from "
            "the X-Device-Token header or the schoolcard_device cookie")
    async def login(request: Request, response: Response, body: LoginBody, key: Key,
                    who: Who) -> auth.SessionTokens:
        message = build_message(auth.Login, request_id=key, ip=who.ip, device=who.device,
                                device_token=who.device_token, **body_fields(body))
        tokens = await ask(gateway(request), message, body.login, auth.SessionTokens)
        if tokens.device_token is not None:  # a browser keeps it without script access
            response.set_cookie(DEVICE_TOKEN_COOKIE, tokens.device_token.get_secret_value(),
                                max_age=DEVICE_COOKIE_MAX_AGE_S, secure=True, httponly=True,
                                samesite="strict", path="/v1/sessions")
        return tokens

    @r.post("/sessions/refresh", response_model=auth.SessionTokens, responses=PUBLIC,
            summary="Renew the access token (the refresh token rotates)")
    async def refresh(request: Request, body: RefreshBody, key: Key) -> auth.SessionTokens:
        message = build_message(auth.RefreshSession, request_id=key, **body_fields(body))
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
        message = build_message(auth.ChangePassword, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    return r
