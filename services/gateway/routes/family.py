"""The family and the profile: a child's guardians and invitations, roles and the primary
handed over, the family's names for the children, one session ended, the language and time
zone, the code word, the phone, closing. Sensitive
calls carry ``reauth`` (the password, the code word or an authenticator code) in the body."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import Field

from contracts import auth
from contracts.types import (
    AccountId,
    Email,
    GuardianRole,
    Identifier,
    Locale,
    Phone,
    Secret,
    TimeZoneName,
)
from services.gateway.routes.common import (
    AUTHED,
    MUTATING,
    Auth,
    Body,
    Contract,
    Key,
    ask,
    body_fields,
    build_message,
    gateway,
)


class Sensitive(Body):
    reauth: auth.Reauthentication | None = None


class InviteBody(Sensitive):
    phone: Phone
    role: GuardianRole


class RoleBody(Body):
    role: GuardianRole


class CodeWordBody(Sensitive):
    code_word: Secret


class PhoneBody(Sensitive):
    phone: Phone


class PhoneCodeBody(Body):
    code: Secret


class EmailBody(Sensitive):
    email: Email


class ProfileBody(Body):
    """Fields left out are unchanged."""

    locale: Locale | None = None
    time_zone: TimeZoneName | None = None


class ChildNameBody(Body):
    display_name: str = Field(max_length=64, examples=["Маша"])


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["family"])

    @r.get("/children/{contract}/guardians", response_model=auth.GuardiansReply,
           responses=AUTHED, summary="The child's guardians and their roles (the primary also "
           "sees the open invitations)")
    async def guardians(request: Request, contract: Contract, me: Auth) -> auth.GuardiansReply:
        return await ask(gateway(request), auth.ListGuardians(contract=contract), me.claims.sub,
                         auth.GuardiansReply, token=me.token)

    @r.post("/children/{contract}/invitations", response_model=auth.CommandCompleted,
            responses=MUTATING, summary="Invite a parent account by phone (primary only, "
            "re-authenticated); it waits for the invitee to accept")
    async def invite(request: Request, contract: Contract, body: InviteBody, me: Auth,
                     key: Key) -> auth.CommandCompleted:
        message = build_message(auth.InviteGuardian, request_id=key, contract=contract,
                                **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.delete("/children/{contract}/invitations/{invitation_id}",
              response_model=auth.CommandCompleted, responses=MUTATING,
              summary="Revoke an invitation not yet accepted (primary only)")
    async def revoke(request: Request, contract: Contract, invitation_id: Identifier,
                     me: Auth, key: Key) -> auth.CommandCompleted:
        message = auth.RevokeInvitation(request_id=key, contract=contract,
                                        invitation_id=invitation_id)
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.post("/children/{contract}/invitations/{invitation_id}/accept",
            response_model=auth.SessionTokens, responses=MUTATING,
            summary="Accept an invitation addressed to me; the reply carries an access token "
            "that includes the child")
    async def accept(request: Request, contract: Contract, invitation_id: Identifier,
                     me: Auth, key: Key) -> auth.SessionTokens:
        message = auth.AcceptInvitation(request_id=key, contract=contract,
                                        invitation_id=invitation_id)
        return await ask(gateway(request), message, me.claims.sub, auth.SessionTokens,
                         token=me.token)

    @r.put("/children/{contract}/guardians/{account_id}/role",
           response_model=auth.CommandCompleted, responses=MUTATING,
           summary="Change a guardian's role, or hand the primary role over (primary only)")
    async def change_role(request: Request, contract: Contract, account_id: AccountId,
                          body: RoleBody, me: Auth, key: Key) -> auth.CommandCompleted:
        message = auth.ChangeGuardianRole(request_id=key, contract=contract,
                                          account_id=account_id, role=body.role)
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.post("/children/{contract}/guardians/{account_id}/removal",
            response_model=auth.CommandCompleted, responses=MUTATING,
            summary="Remove a guardian, or leave (my own account id); re-authenticated")
    async def remove(request: Request, contract: Contract, account_id: AccountId,
                     body: Sensitive, me: Auth, key: Key) -> auth.CommandCompleted:
        message = build_message(auth.RemoveGuardian, request_id=key, contract=contract,
                                account_id=account_id, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.get("/invitations", response_model=auth.InvitationsReply, responses=AUTHED,
           summary="Open invitations addressed to me")
    async def my_invitations(request: Request, me: Auth) -> auth.InvitationsReply:
        return await ask(gateway(request), auth.ListInvitations(), me.claims.sub,
                         auth.InvitationsReply, token=me.token)

    @r.delete("/sessions/{session_id}", response_model=auth.CommandCompleted,
              responses=MUTATING, summary="End one session (from GET /v1/sessions); the "
              "others stay")
    async def end_session(request: Request, session_id: Identifier, me: Auth,
                          key: Key) -> auth.CommandCompleted:
        return await ask(gateway(request), auth.EndSession(request_id=key,
                                                           session_id=session_id),
                         me.claims.sub, auth.CommandCompleted, token=me.token)

    @r.get("/account/profile", response_model=auth.ProfileReply, responses=AUTHED,
           summary="My profile: contacts, language, time zone, protections, children")
    async def profile(request: Request, me: Auth) -> auth.ProfileReply:
        return await ask(gateway(request), auth.GetProfile(), me.claims.sub, auth.ProfileReply,
                         token=me.token)

    @r.patch("/account/profile", response_model=auth.CommandCompleted, responses=MUTATING,
             summary="Change the language or the time zone of my messages")
    async def update_profile(request: Request, body: ProfileBody, me: Auth,
                             key: Key) -> auth.CommandCompleted:
        message = build_message(auth.UpdateProfile, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.put("/children/{contract}/name", response_model=auth.CommandCompleted,
           responses=MUTATING, summary="The family's name for the child (primary or "
           "co-guardian); empty clears it")
    async def child_name(request: Request, contract: Contract, body: ChildNameBody, me: Auth,
                         key: Key) -> auth.CommandCompleted:
        message = build_message(auth.SetChildName, request_id=key, contract=contract,
                                **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.put("/account/code-word", response_model=auth.CommandCompleted, responses=MUTATING,
           summary="Set the code word that re-authenticates sensitive changes")
    async def code_word(request: Request, body: CodeWordBody, me: Auth,
                        key: Key) -> auth.CommandCompleted:
        message = build_message(auth.SetCodeWord, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.post("/account/phone", response_model=auth.RegistrationStarted, responses=MUTATING,
            summary="Add or change the phone: a code is sent to the new number")
    async def start_phone(request: Request, body: PhoneBody, me: Auth,
                          key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.StartPhoneChange, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.RegistrationStarted,
                         token=me.token)

    @r.post("/account/phone/confirm", response_model=auth.CommandCompleted,
            responses=MUTATING, summary="Set the new phone with the code sent to it")
    async def confirm_phone(request: Request, body: PhoneCodeBody, me: Auth,
                            key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmPhoneChange, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.post("/account/email", response_model=auth.RegistrationStarted, responses=MUTATING,
            summary="Add or change the e-mail: a code is sent to the new address")
    async def start_email(request: Request, body: EmailBody, me: Auth,
                          key: Key) -> auth.RegistrationStarted:
        message = build_message(auth.StartEmailChange, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.RegistrationStarted,
                         token=me.token)

    @r.post("/account/email/confirm", response_model=auth.CommandCompleted,
            responses=MUTATING, summary="Set the new e-mail with the code sent to it")
    async def confirm_email(request: Request, body: PhoneCodeBody, me: Auth,
                            key: Key) -> auth.CommandCompleted:
        message = build_message(auth.ConfirmEmailChange, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    @r.post("/account/closure", response_model=auth.CommandCompleted, responses=MUTATING,
            summary="Close the account for good (re-authenticated)")
    async def close(request: Request, body: Sensitive, me: Auth,
                    key: Key) -> auth.CommandCompleted:
        message = build_message(auth.CloseAccount, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.CommandCompleted,
                         token=me.token)

    return r
