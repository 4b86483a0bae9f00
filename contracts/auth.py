"""Contracts owned by auth: the parent's cabinet commands, their replies, the access-token
claims every service verifies, and the events other services project (guardianship, logins).

Registration, login and reset replies are deliberately identical whether or not the phone or
contract is known (no user enumeration). One-time codes travel only on
``notify.otp-requests.v1`` (see contracts.notify), never in these replies or events.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.types import (
    AccountId,
    ContractNumber,
    Email,
    GuardianRole,
    Identifier,
    Locale,
    Phone,
    SchoolId,
    Secret,
    TimeZoneName,
    UtcDatetime,
)

Password = Secret


class Role(StrEnum):
    PARENT = "parent"
    SCHOOL_ADMIN = "school_admin"
    CANTEEN_OPERATOR = "canteen_operator"
    TEACHER = "teacher"
    SUPPORT = "support"
    INTEGRATOR = "integrator"


class ChildGrant(Part):
    contract: ContractNumber
    role: GuardianRole


class AccessTokenClaims(Part):
    """Claims of the access token: a JWT signed by auth with Ed25519 (``alg: EdDSA``), verified
    by every service with auth's public key. Lifetime 5 minutes; sessions are renewed with the
    refresh token. Services authorise parent commands from ``children`` without calling auth."""

    iss: str = Field(default="schoolcard-auth", description="Issuer.")
    sub: AccountId = Field(description="The account.")
    sid: Identifier = Field(description="Session id; revoked sessions stop refreshing.")
    role: Role
    school_id: SchoolId | None = Field(default=None, description="Staff: their school.")
    children: list[ChildGrant] = Field(default_factory=list,
                                       description="Parents: the children and the role held.")
    iat: int = Field(description="Issued at, Unix seconds.")
    exp: int = Field(description="Expires at, Unix seconds (iat + 300).")
    jti: str = Field(description="Token id (>= 128 bits of randomness).")


# --- commands and queries on auth.commands.v1 (key: phone or account id) --------------------

class StartRegistration(Command):
    request_id: Identifier
    phone: Phone
    contract: ContractNumber
    password: Password = Field(description="8-128 characters; never logged.")
    consent: bool = Field(description="Consent to the terms; must be true.")
    email: Email | None = None
    locale: Locale = Locale.RU


class ConfirmRegistration(Command):
    request_id: Identifier
    phone: Phone
    code: Secret = Field(description="The 6-digit code from the SMS; never logged.")


class ResendCode(Command):
    request_id: Identifier
    phone: Phone
    purpose: str = Field(default="registration", description="registration | password_reset")


class Login(Command):
    request_id: Identifier
    login: str = Field(description="Phone (E.164 or local) or e-mail.",
                       examples=["+79121234567"])
    password: Password
    totp: Secret | None = Field(default=None, description="Second factor, when enabled.")
    device: str = Field(default="", max_length=120, description="User agent / device name.")
    ip: str = Field(default="", max_length=64, description="Client address (stored hashed).")


class RefreshSession(Command):
    request_id: Identifier
    refresh_token: Secret


class Logout(Command):
    request_id: Identifier
    everywhere: bool = False


class RequestPasswordReset(Command):
    request_id: Identifier
    phone: Phone


class ConfirmPasswordReset(Command):
    request_id: Identifier
    phone: Phone
    code: Secret
    new_password: Password


class ChangePassword(Command):
    request_id: Identifier
    current_password: Password
    new_password: Password


class LinkChild(Command):
    """Link a child to the calling parent with proof: contract + birth date, or an activation
    code handed out by the school."""

    request_id: Identifier
    contract: ContractNumber
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    activation_code: Secret | None = None


class InviteGuardian(Command):
    """Primary guardian only: give another parent account a role for the child."""

    request_id: Identifier
    contract: ContractNumber
    phone: Phone
    role: GuardianRole


class RemoveGuardian(Command):
    request_id: Identifier
    contract: ContractNumber
    account_id: AccountId


class CreateStaffAccount(Command):
    """Support only: staff and integrator service accounts."""

    request_id: Identifier
    login: str
    password: Password
    role: Role
    school_id: SchoolId | None = None


class CloseAccount(Command):
    request_id: Identifier


class ListSessions(Query):
    pass


class GetLoginHistory(Query):
    limit: int = Field(default=20, ge=1, le=200)


# --- replies -----------------------------------------------------------------------------------

class RegistrationStarted(Reply):
    """Identical for known and unknown phones/contracts."""

    request_id: Identifier
    resend_after_s: int = Field(description="Seconds before a new code may be requested.")


class SessionTokens(Reply):
    request_id: Identifier
    access_token: Secret | None = None
    refresh_token: Secret | None = None
    expires_in_s: int = 0
    must_change_password: bool = False


class SessionInfo(Part):
    session_id: Identifier
    device: str
    started_at: UtcDatetime
    last_seen_at: UtcDatetime
    current: bool


class SessionsReply(Reply):
    sessions: list[SessionInfo] = Field(default_factory=list)


class LoginRecord(Part):
    at: UtcDatetime
    device: str
    success: bool


class LoginHistoryReply(Reply):
    entries: list[LoginRecord] = Field(default_factory=list)


# --- events on auth.events.v1 (key: account id) -----------------------------------------------

class ParentRegistered(Event):
    account_id: AccountId
    registered_at: UtcDatetime


class LoginSucceeded(Event):
    """A new login: notify sends the "new login" alert."""

    account_id: AccountId
    session_id: Identifier
    device: str
    at: UtcDatetime


class PasswordChanged(Event):
    account_id: AccountId
    reset: bool = Field(description="True when changed by reset code.")
    at: UtcDatetime


class GuardianLinked(Event):
    """The other services project who may act for which child from these."""

    account_id: AccountId
    contract: ContractNumber
    role: GuardianRole
    at: UtcDatetime


class GuardianRemoved(Event):
    account_id: AccountId
    contract: ContractNumber
    at: UtcDatetime


class AccountClosed(Event):
    account_id: AccountId
    at: UtcDatetime


class GuardianContacts(Event):
    """Contacts and locale of a guardian, on the compacted ``auth.guardian-contacts.v1``
    (personal data: read by notify only). A null phone and e-mail tombstone a closed account."""

    account_id: AccountId
    phone: Phone | None
    email: Email | None = None
    locale: Locale = Locale.RU
    time_zone: TimeZoneName = "Europe/Samara"
    updated_at: UtcDatetime
