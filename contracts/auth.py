"""Contracts owned by auth: the parent's cabinet commands, their replies, the access-token
claims every service verifies, and the events other services project (guardianship, logins).

Registration, login and reset replies are deliberately identical whether or not the phone or
contract is known (no user enumeration). One-time codes travel only on
``notify.otp-requests.v1`` (see contracts.notify), never in these replies or events.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.types import (
    AccountId,
    ContractNumber,
    Email,
    GuardianRole,
    Identifier,
    Locale,
    LongSecret,
    Phone,
    SchoolId,
    Secret,
    ShortSecret,
    TimeZoneName,
    UtcDatetime,
    calendar_date,
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
    """Claims of the access token: a JWT signed by auth with Ed25519 (``alg: EdDSA``; the
    header's ``kid`` names the signing key), verified by every service with auth's public keys.
    Lifetime 5 minutes; sessions are renewed with the refresh token. Services authorise parent
    commands from ``children`` without calling auth, and only when they are named in ``aud``."""

    iss: str = Field(default="schoolcard-auth", max_length=64, description="Issuer.")
    sub: AccountId = Field(description="The account.")
    sid: Identifier = Field(description="Session id; revoked sessions stop refreshing.")
    role: Role = Field(description="The account's role; decides which commands services "
                       "accept from it.", examples=["parent"])
    school_id: SchoolId | None = Field(default=None, description="Staff: their school.")
    operator_id: Identifier | None = Field(
        default=None, description="Integrators: the transport operator the account acts for "
        "(given when support created it); an integrator acts on that operator only "
        "(services.runtime.authorization). None for every other role.",
        examples=["izhevsk-gortrans"])
    children: list[ChildGrant] = Field(default_factory=list,
                                       description="Parents: the children and the role held.")
    iat: int = Field(description="Issued at, Unix seconds.")
    exp: int = Field(description="Expires at, Unix seconds (iat + 300).")
    jti: str = Field(max_length=64, description="Token id (>= 128 bits of randomness).")
    aud: list[Identifier] = Field(default_factory=list, description="The services that accept the "
                           "token: auth plus those whose commands the role may send "
                           "(services.runtime.authorization.audience); any other refuses it "
                           "with wrong_audience.", examples=[["auth", "access"]])


# --- commands and queries on auth.commands.v1 (key: phone or account id) --------------------

class StartRegistration(Command):
    """Start a parent registration; a code is sent to the phone. The reply is the same for
    known and unknown phones and contracts. A phone outside the countries auth serves
    (AUTH_PHONE_COUNTRIES, +7 by default) is refused phone_country_not_served. Repeated for a
    phone whose registration is pending, it sends a new code and never replaces the pending
    password: another password drops it, and the confirmed account then sets one by a reset
    code."""

    request_id: Identifier
    phone: Phone
    contract: ContractNumber
    password: Password = Field(description="8-128 characters; never logged.")
    consent: bool = Field(description="Consent to the terms; must be true.")
    email: Email | None = Field(default=None, description="Optional e-mail for receipts and "
                                "notifications (personal data).",
                                examples=["parent@example.ru"])
    locale: Locale = Field(default=Locale.RU, description="Language of the SMS code and of "
                           "later notifications: ru or en.", examples=["ru"])
    birth_date: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", max_length=10,
        description="The child's birth date (YYYY-MM-DD), the proof that links the child of "
        "the contract once the phone is confirmed (as LinkChild); or give activation_code. "
        "Checked only at ConfirmRegistration: the start reply is the same either way.",
        examples=["2014-03-08"])
    activation_code: ShortSecret | None = Field(
        default=None, description="The activation code handed out by the school, the other "
        "proof; kept only as a keyed digest until the confirmation, never logged.",
        examples=["K7P2Q9XM"])

    @field_validator("birth_date")
    @classmethod
    def _a_calendar_date(cls, value: str | None) -> str | None:
        return value if value is None else calendar_date(value)


class ConfirmRegistration(Command):
    request_id: Identifier
    phone: Phone
    code: ShortSecret = Field(description="The 6-digit code from the SMS; never logged.")


class ResendCode(Command):
    request_id: Identifier
    phone: Phone
    purpose: str = Field(default="registration", max_length=32,
                         description="registration | password_reset")


class Login(Command):
    PRIVATE_REPLY: ClassVar[bool] = True
    request_id: Identifier
    login: str = Field(max_length=254, description="Phone (E.164 or local) or e-mail.",
                       examples=["+79121234567"])
    password: Password
    totp: ShortSecret | None = Field(
        default=None, description="The current 6-digit code of the authenticator app (TOTP, "
        "RFC 6238, 30 s steps); required once the account has confirmed a TOTP enrolment. "
        "Missing: ErrorReply second_factor_required; wrong or already used: "
        "second_factor_invalid (both count as failed logins). Never logged.",
        examples=["492039"])
    device: str = Field(default="", max_length=120, description="User agent / device name.")
    ip: str = Field(default="", max_length=64, description="Client address (stored hashed).")
    device_token: Secret | None = Field(
        default=None, description="The device token an earlier successful login from this "
        "device returned (SessionTokens.device_token; the gateway takes it from the "
        "X-Device-Token header or the schoolcard_device cookie). A token of one of the "
        "account's trusted devices makes the login a known device's: no new-login alert, and "
        "it passes the account's hourly failure ceiling. Never logged.",
        examples=["dt-9c3e71b2a4f05d8e6b1c2a7f9e0d4b3c"])


class RefreshSession(Command):
    PRIVATE_REPLY: ClassVar[bool] = True
    request_id: Identifier
    refresh_token: Secret


class Logout(Command):
    request_id: Identifier
    everywhere: bool = Field(default=False, description="True: end every session of the "
                             "account, not only the calling one.", examples=[True])


class RequestPasswordReset(Command):
    """Send a reset code to the phone (same reply for known and unknown phones); a phone
    outside AUTH_PHONE_COUNTRIES is refused phone_country_not_served."""

    request_id: Identifier
    phone: Phone


class ConfirmPasswordReset(Command):
    request_id: Identifier
    phone: Phone
    code: ShortSecret
    new_password: Password


class ChangePassword(Command):
    request_id: Identifier
    current_password: Password
    new_password: Password


class StartTotpEnrolment(Command):
    """Begin binding an authenticator app (TOTP, RFC 6238) to the calling account. Needs the
    current password again, so that a stolen access token alone cannot enrol a factor the
    owner does not hold. Answered with TotpEnrolmentStarted; logins need a code only after
    ConfirmTotpEnrolment. Repeating it before the confirmation replaces the secret."""

    PRIVATE_REPLY: ClassVar[bool] = True
    request_id: Identifier
    password: Password = Field(description="The account's current password "
                               "(re-authentication); a wrong one counts as a failed login. "
                               "Never logged.")


class ConfirmTotpEnrolment(Command):
    """Switch the second factor on with the first code the authenticator app shows for the
    secret of TotpEnrolmentStarted. Answered with CommandCompleted, or an ErrorReply
    second_factor_invalid (counted: 100 wrong codes an hour at most)."""

    request_id: Identifier
    code: ShortSecret = Field(description="The current 6-digit code of the authenticator "
                              "app; never logged.", examples=["492039"])


class DisableTotp(Command):
    """Switch the calling account's second factor off. Needs both factors again: the current
    password and a current code of the authenticator app, so that neither a stolen access
    token nor a password alone can remove it. Answered with CommandCompleted, or an ErrorReply
    invalid_credentials (wrong password; the code is then not checked), second_factor_required
    (no code), second_factor_invalid (wrong or already used code), login_delayed /
    login_rate_limited (too many failures: these refusals count in the same window as failed
    logins), second_factor_not_enabled. A parent without the app asks support
    (ResetSecondFactor)."""

    request_id: Identifier
    password: Password = Field(description="The account's current password "
                               "(re-authentication); a wrong one counts as a failed login. "
                               "Never logged.")
    code: ShortSecret = Field(description="The current 6-digit code of the authenticator app; a "
                         "wrong or already used one counts as a failed login. Never logged.",
                         examples=["492039"])


class ResetSecondFactor(Command):
    """Support only (token role support): remove a parent's second factor after the parent's
    identity was checked outside the system (e.g. a call back on the registered phone and the
    contract details). Every session of the parent ends, the parent's login failure window is
    cleared, and SecondFactorDisabled (by_support true) tells the parent. Answered with
    CommandCompleted (account_id of the parent), or an ErrorReply forbidden (not support),
    account_not_found, wrong_account_kind (not a parent), reset_reason_required,
    second_factor_not_enabled. A retry with the same request_id answers the same."""

    request_id: Identifier
    login: str = Field(max_length=254, description="What the parent logs in with: phone "
                       "(E.164 or local), e-mail, or the contract number of a login by "
                       "contract.",
                       examples=["+79121234567"])
    reason: str = Field(max_length=500, description="Why the factor is reset and how the "
                        "identity was checked; mandatory, at least 10 characters. Kept with "
                        "the account for audit (with the support account and the time), never "
                        "sent to the parent or logged.",
                        examples=["Lost phone; identity checked by call-back to the registered "
                                  "phone and contract details, ticket SUP-1042"])


class UnlockAccount(Command):
    """Support only (token role support): clear the login throttles of the account a login
    names (every source's window, the hourly ceiling, the wrong tries counted for good
    against a contract's birth-date password) after the owner's identity was checked outside
    the system; given a contract number, the child's proof budget (wrong birth dates) starts
    over too. Answered with CommandCompleted (account_id of the account, None when only a
    child was unlocked), or an ErrorReply forbidden (not support), account_not_found,
    reset_reason_required. A retry with the same request_id answers the same."""

    request_id: Identifier
    login: str = Field(max_length=254, description="What the owner logs in with: phone "
                       "(E.164 or local), e-mail, login name, or a contract number (then the "
                       "child's proof budget is reset too).", examples=["+79121234567"])
    reason: str = Field(max_length=500, description="How the identity was checked and why; "
                        "mandatory, at least 10 characters. Kept with the account for audit "
                        "(with the support account and the time), never logged or sent.",
                        examples=["Locked out by guessing; identity checked by call-back, "
                                  "ticket SUP-1043"])


class Reauthentication(Part):
    """Proof, inside the command, that the account's owner is at the device: one of the
    password, the code word the parent set (SetCodeWord) or a fresh authenticator code. A
    sensitive change (closing the account, inviting or removing a guardian, changing the
    phone or e-mail) is refused reauthentication_required without one, and a wrong one counts
    as a failed login (invalid_credentials)."""

    password: Password | None = Field(default=None, description="The account's password; "
                                      "never logged.")
    code_word: ShortSecret | None = Field(default=None, description="The code word set with "
                                          "SetCodeWord; never logged.", examples=["blue heron"])
    totp: ShortSecret | None = Field(default=None, description="The authenticator app's "
                                     "current code (accounts with a second factor); never "
                                     "logged.", examples=["493817"])


class LinkChild(Command):
    """Link a child to the calling parent with proof: the activation code handed out by the
    school (the only proof accepted for a child whose card issuer sent one), else contract +
    birth date. A child that already has a primary guardian answers child_proof_invalid to
    every proof, right or wrong (the primary invites others: InviteGuardian). Wrong birth
    dates count for good: after 10 no birth date is accepted for the child until support
    unlocks it (UnlockAccount with the contract number)."""

    request_id: Identifier
    contract: ContractNumber
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", max_length=10,
                                   description="Child's birth date (YYYY-MM-DD), the proof "
                                   "given with the contract; or give activation_code.",
                                   examples=["2014-03-08"])
    activation_code: ShortSecret | None = Field(default=None, description="Activation code "
                                                "handed out by the school, the alternative "
                                                "proof to birth_date; never logged.",
                                                             examples=["K7P2Q9XM"])

    @field_validator("birth_date")
    @classmethod
    def _a_calendar_date(cls, value: str | None) -> str | None:
        return value if value is None else calendar_date(value)


class InviteGuardian(Command):
    """Primary guardian only: invite another parent account (found by its phone) to a role
    for the child. The invitation waits for the invitee (AcceptInvitation) for 7 days; the
    reply names it (invitation_id). A phone with no active account: invitation_invalid."""

    request_id: Identifier
    contract: ContractNumber
    phone: Phone
    role: GuardianRole
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required "
        "(reauthentication_required without it).")


class RemoveGuardian(Command):
    """The primary removes another guardian, or a guardian leaves (their own account_id).
    The primary hands over first (ChangeGuardianRole with role primary)."""

    request_id: Identifier
    contract: ContractNumber
    account_id: AccountId
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required "
        "(reauthentication_required without it).")


class AcceptInvitation(Command):
    """The invitee takes up an invitation addressed to their account (ListInvitations); the
    reply carries a fresh access token that includes the child."""

    PRIVATE_REPLY: ClassVar[bool] = True

    request_id: Identifier
    contract: ContractNumber
    invitation_id: Identifier


class RevokeInvitation(Command):
    """The primary withdraws an invitation not yet accepted (a second revoke is a no-op)."""

    request_id: Identifier
    contract: ContractNumber
    invitation_id: Identifier


class ChangeGuardianRole(Command):
    """The primary switches another guardian between co_guardian and viewer, or hands the
    primary role over (role primary: the caller becomes a co_guardian)."""

    request_id: Identifier
    contract: ContractNumber
    account_id: AccountId
    role: GuardianRole


class ListGuardians(Query):
    """The guardians of a child the caller guards, with their roles; the primary also sees
    the invitations still open."""

    contract: ContractNumber


class ListInvitations(Query):
    """The open invitations addressed to the caller's account."""


class EndSession(Command):
    """End one of the caller's sessions (a session_id from ListSessions); the others stay."""

    request_id: Identifier
    session_id: Identifier


class SetCodeWord(Command):
    """Set or replace the code word that re-authenticates sensitive changes (stored hashed
    like a password); needs the password (or the current code word or an authenticator
    code) in reauth."""

    request_id: Identifier
    code_word: ShortSecret = Field(description="6-64 characters; never logged.",
                                   examples=["blue heron"])
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required "
        "(reauthentication_required without it).")


class UpdateProfile(Command):
    """The language and the time zone notifications are written in (left out: unchanged)."""

    request_id: Identifier
    locale: Locale | None = Field(default=None, description="ru or en.", examples=["en"])
    time_zone: TimeZoneName | None = Field(default=None, description="IANA time zone.",
                                           examples=["Asia/Yekaterinburg"])


class SetChildName(Command):
    """The family's name for a child in the cabinet (primary or co-guardian); kept by auth
    for the child's guardians, never sent to integrators. Empty clears it."""

    request_id: Identifier
    contract: ContractNumber
    display_name: str = Field(max_length=64, description="At most 64 characters; spaces "
                              "folded.", examples=["Маша"])


class GetProfile(Query):
    """The caller's profile: contacts, language, time zone, what protects the account, and
    the children with the family's names for them."""


class StartPhoneChange(Command):
    """Add a phone (an account created by contract has none) or change it: a code goes to the
    new number by SMS; ConfirmPhoneChange sets it. Changing an existing phone needs reauth."""

    request_id: Identifier
    phone: Phone
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required "
        "(reauthentication_required without it).")


class ConfirmPhoneChange(Command):
    """Set the phone started by StartPhoneChange with the code sent to it. A phone another
    account holds is refused phone_taken (only its holder got the code)."""

    request_id: Identifier
    code: ShortSecret = Field(description="The 6-digit code from the SMS; never logged.")


class StartEmailChange(Command):
    """Add an e-mail or change it: a 6-digit code goes to the new address by e-mail;
    ConfirmEmailChange sets it. Changing an existing e-mail needs reauth."""

    request_id: Identifier
    email: Email = Field(description="The new address; stored lower-cased.",
                         examples=["parent@example.ru"])
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required when "
        "an e-mail is already set (reauthentication_required without it).")


class ConfirmEmailChange(Command):
    """Set the e-mail started by StartEmailChange with the code sent to it. An address
    another account holds is refused email_taken (only its holder got the code)."""

    request_id: Identifier
    code: ShortSecret = Field(description="The 6-digit code from the e-mail; never logged.")


class CreateStaffAccount(Command):
    """Support only: staff and integrator service accounts."""

    request_id: Identifier
    login: str = Field(max_length=254, description="Login name of the new staff or "
                       "integrator account; unique across accounts.",
                       examples=["canteen.izh42"])
    password: Password
    role: Role = Field(description="Role granted to the new account (staff or integrator).",
                       examples=["canteen_operator"])
    school_id: SchoolId | None = Field(default=None, description="The school a staff member "
                                       "works at; None for support and integrators.",
                                       examples=["izh-school-42"])
    operator_id: Identifier | None = Field(
        default=None, description="Role integrator only, and required for it: the transport "
        "operator the integrator acts for (kept with the account and put in its tokens; "
        "transit refuses its fare rules for any other operator). Given for another role: "
        "ErrorReply invalid_role.", examples=["izhevsk-gortrans"])


class CloseAccount(Command):
    request_id: Identifier
    reauth: Reauthentication | None = Field(
        default=None, description="Password, code word or authenticator code: required "
        "(reauthentication_required without it).")


class ListSessions(Query):
    pass


class ListTrustedDevices(Query):
    """The calling account's trusted devices (those it logged in from and kept the device
    token of), most recently seen first: TrustedDevicesReply."""


class RenameTrustedDevice(Command):
    """Give one of the caller's trusted devices a name for the list. CommandCompleted, or
    ErrorReply device_not_found, device_name_invalid (empty after trimming)."""

    request_id: Identifier
    device_id: Identifier = Field(description="From TrustedDevicesReply.",
                                  examples=["dev-5b2e9c"])
    name: str = Field(min_length=1, max_length=120, description="The new name.",
                      examples=["Телефон мамы"])


class RevokeTrustedDevice(Command):
    """Stop trusting one of the caller's devices: its device token no longer marks a known
    device (the next login from it raises the new-login alert and meets the account's failure
    ceiling like a stranger's), and every session logged in from it ends (SessionEnded, reason
    device_revoked: a lost phone is signed out). CommandCompleted, or ErrorReply
    device_not_found."""

    request_id: Identifier
    device_id: Identifier = Field(description="From TrustedDevicesReply.",
                                  examples=["dev-5b2e9c"])


class GetLoginHistory(Query):
    limit: int = Field(default=20, ge=1, le=200, description="How many of the most recent "
                       "login attempts to return.", examples=[20])


# --- replies -----------------------------------------------------------------------------------

class RegistrationStarted(Reply):
    """Identical for known and unknown phones/contracts."""

    request_id: Identifier
    resend_after_s: int = Field(description="Seconds before a new code may be requested.")


class SessionTokens(Reply):
    """A new session's tokens: sent only to the requester's own reply topic."""

    PRIVATE: ClassVar[bool] = True

    request_id: Identifier
    access_token: LongSecret | None = Field(
        default=None, description="Access token (JWT signed by auth, 5-minute lifetime) sent "
        "as the authorization header; None when the request failed.",
        examples=["eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhY2NfN2YzYTljMmUxYjRkIn0.c2ln"])
    refresh_token: Secret | None = Field(
        default=None, description="Opaque refresh token for RefreshSession, rotated on each "
        "use; None when the request failed.", examples=["rt-4f9d2c7a1e8b6d3f0a5c9e2b7d4f1a8c"])
    expires_in_s: int = Field(default=0, description="Seconds until the access token expires; "
                              "0 when no token was issued.", examples=[300])
    must_change_password: bool = Field(
        default=False, description="True when the initial (birth-date) password is still set: "
        "the app must have the parent change it first.", examples=[False])
    device_token: Secret | None = Field(
        default=None, description="At a successful login: this device's token, to keep and "
        "send with later logins (Login.device_token); the one presented when it was already "
        "trusted, else a new one. None on refresh and on failure.",
        examples=["dt-9c3e71b2a4f05d8e6b1c2a7f9e0d4b3c"])


class TotpEnrolmentStarted(Reply):
    """The TOTP secret for the authenticator app, sent once to the account's owner (only in
    this reply; never in events or logs). Confirm it with ConfirmTotpEnrolment."""

    PRIVATE: ClassVar[bool] = True

    request_id: Identifier
    secret: Secret = Field(max_length=128, description="Shared TOTP secret: 160 random "
                           "bits, base32 without padding, for manual entry in the app. Never "
                           "logged.",
                           examples=["JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"])
    otpauth_uri: LongSecret = Field(
        max_length=2048, description="The same secret as an otpauth:// Key URI (issuer "
        "SchoolCard, SHA1, 6 digits, 30 s) to show as a QR code. Never logged.",
        examples=["otpauth://totp/SchoolCard:%2B79121234567?digits=6&"
                  "secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&algorithm=SHA1&issuer=SchoolCard&"
                  "period=30"])
    digits: int = Field(default=6, description="Digits of each code.", examples=[6])
    period_s: int = Field(default=30, description="Seconds each code is valid for (the time "
                          "step).", examples=[30])


class CommandCompleted(Reply):
    """Reply to an auth command that was applied and returns no tokens (confirmed
    registration, password reset, logout, TOTP confirmation, disabling or reset, guardian
    changes, account creation and closing)."""

    request_id: Identifier
    account_id: AccountId | None = Field(
        default=None, description="The account created or changed, when the caller may know "
        "it (a new staff account, an added or removed guardian); None otherwise.",
        examples=["acc_7f3a9c2e1b4d"])
    child_linked: bool | None = Field(
        default=None, description="ConfirmRegistration with a proof: true when the child of "
        "the contract was linked (the caller is its primary guardian), false when the proof "
        "was refused (wrong, or the child is already claimed: the same answer); None "
        "otherwise.", examples=[True])
    invitation_id: Identifier | None = Field(
        default=None, description="InviteGuardian: the invitation waiting for the invitee.",
        examples=["inv_r-81f2"])


class GuardianInfo(Part):
    account_id: AccountId
    role: GuardianRole
    phone_hint: str = Field(max_length=16, description="The guardian's phone with all but "
                            "the country code and last 4 digits hidden; empty without one.",
                            examples=["+7******4567"])
    you: bool = Field(description="True for the caller.", examples=[True])


class InvitationInfo(Part):
    invitation_id: Identifier
    contract: ContractNumber
    role: GuardianRole
    expires_at: UtcDatetime
    account_id: AccountId | None = Field(
        default=None, description="The invitee (in ListGuardians, for the primary).",
        examples=["acc_7f3a9c2e1b4d"])


class GuardiansReply(Reply):
    guardians: list[GuardianInfo] = Field(
        default_factory=list, description="The child's guardians and their roles.",
        examples=[[{"account_id": "acc_7f3a9c2e1b4d", "role": "primary",
                    "phone_hint": "+7******4567", "you": True}]])
    invitations: list[InvitationInfo] = Field(
        default_factory=list, description="Open invitations (shown to the primary only).",
        examples=[[]])


class InvitationsReply(Reply):
    invitations: list[InvitationInfo] = Field(
        default_factory=list, description="Open invitations addressed to the caller.",
        examples=[[{"invitation_id": "inv_r-81f2", "contract": "12345678",
                    "role": "co_guardian", "expires_at": "2026-09-08T05:12:30Z"}]])


class ChildProfile(Part):
    contract: ContractNumber
    role: GuardianRole
    display_name: str | None = Field(default=None, max_length=64,
                                     description="The family's name for the child.",
                                     examples=["Маша"])


class ProfileReply(Reply):
    account_id: AccountId
    phone: Phone | None = Field(default=None, description="None for an account created by "
                                "contract until it adds one.")
    email: Email | None = Field(default=None, description="E-mail for receipts and e-mail "
                                "notifications, when given.", examples=["parent@example.ru"])
    locale: Locale = Field(default=Locale.RU, description="Language of the account's "
                           "messages: ru or en.", examples=["ru"])
    time_zone: TimeZoneName = "Europe/Samara"
    code_word_set: bool = Field(default=False, description="A code word re-authenticates "
                                "sensitive changes.", examples=[True])
    second_factor: bool = Field(default=False, description="An authenticator app is enrolled.",
                                examples=[False])
    children: list[ChildProfile] = Field(
        default_factory=list, description="The children the caller guards.",
        examples=[[{"contract": "12345678", "role": "primary", "display_name": "Маша"}]])


class SessionInfo(Part):
    session_id: Identifier
    device: str = Field(max_length=200, description="User agent / device name given at login.",
                        examples=["Android 14, SchoolCard 2.4"])
    device_id: Identifier | None = Field(
        default=None, description="The trusted device the session was logged in from (as in "
        "TrustedDevicesReply); revoking that device ends the session. None: a session started "
        "before sessions recorded their device (it is not ended by a device revocation; "
        "EndSession ends it).", examples=["dev-5b2e9c"])
    device_name: str | None = Field(
        default=None, max_length=120, description="That trusted device's name in the owner's "
        "list (as in TrustedDevicesReply, renamed or not); None when device_id is None or the "
        "device is no longer trusted.", examples=["Телефон мамы"])
    started_at: UtcDatetime
    last_seen_at: UtcDatetime
    current: bool = Field(description="True for the session that made this request.",
                          examples=[True])


class SessionsReply(Reply):
    sessions: list[SessionInfo] = Field(
        default_factory=list, description="Active sessions of the calling account.",
        examples=[[{"session_id": "ses-8c1f2a", "device": "Android 14, SchoolCard 2.4",
                    "device_id": "dev-5b2e9c", "device_name": "Телефон мамы",
                    "started_at": "2026-09-01T05:12:30Z",
                    "last_seen_at": "2026-09-01T05:20:00Z", "current": True}]])


class TrustedDeviceInfo(Part):
    device_id: Identifier = Field(examples=["dev-5b2e9c"])
    name: str = Field(max_length=120, description="The device name given at its first login, "
                      "or the owner's name for it.", examples=["Android 14, SchoolCard 2.4"])
    first_seen_at: UtcDatetime
    last_seen_at: UtcDatetime = Field(description="Its most recent successful login.")


class TrustedDevicesReply(Reply):
    devices: list[TrustedDeviceInfo] = Field(
        default_factory=list, max_length=20, description="The caller's trusted devices, most "
        "recently seen first (at most 20: the one seen longest ago is forgotten first).",
        examples=[[{"device_id": "dev-5b2e9c", "name": "Android 14, SchoolCard 2.4",
                    "first_seen_at": "2026-09-01T05:12:30Z",
                    "last_seen_at": "2026-09-03T06:40:00Z"}]])


class LoginRecord(Part):
    at: UtcDatetime
    device: str = Field(max_length=200, description="User agent / device name of the attempt.",
                        examples=["Android 14, SchoolCard 2.4"])
    success: bool = Field(description="True when the login succeeded.", examples=[True])


class LoginHistoryReply(Reply):
    entries: list[LoginRecord] = Field(
        default_factory=list, description="Recent login attempts of the calling account, at "
        "most the requested limit.",
        examples=[[{"at": "2026-09-01T05:12:30Z", "device": "Android 14, SchoolCard 2.4",
                    "success": True}]])


# --- events on auth.events.v1 (key: account id) -----------------------------------------------

class ParentRegistered(Event):
    account_id: AccountId
    registered_at: UtcDatetime


class LoginSucceeded(Event):
    """A login from a device not seen before (it presented no trusted device token): notify
    sends the "new login" alert. Logins from the account's trusted devices raise none."""

    account_id: AccountId
    session_id: Identifier
    device: str = Field(max_length=200, description="User agent / device name of the new "
                        "session, quoted in the new-login alert.",
                        examples=["Android 14, SchoolCard 2.4"])
    at: UtcDatetime


class AccountLocked(Event):
    """Failed logins closed the account's login to all but its trusted devices: notify tells
    the owner (a security message: no quiet hours, cannot be muted). Sent once per closing."""

    account_id: AccountId
    until: UtcDatetime | None = Field(
        default=None, description="When the login opens again by itself (the hourly failure "
        "ceiling); None: only support opens it (the wrong tries against a password anyone "
        "knowing the child's birth date could type ran out).", examples=["2026-09-01T06:12:30Z"])
    at: UtcDatetime


class AccountUnlocked(Event):
    """Support opened the account's login again (UnlockAccount, after checking the owner's
    identity outside the system): notify tells the owner. Never carries support's reason."""

    account_id: AccountId
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


class GuardianInvited(Event):
    """The child's primary guardian invited another parent account to follow the child
    (InviteGuardian): notify tells the invitee to accept in the cabinet (AcceptInvitation,
    within 7 days). Ids only: no names, no phone; the child is its contract number."""

    account_id: AccountId = Field(description="The invitee, who is told (key of the record).",
                                  examples=["acc_7f3a9c2e1b4d"])
    contract: ContractNumber = Field(description="The child's contract the invitation is "
                                     "for.", examples=["40012345"])
    role: GuardianRole = Field(description="The role offered to the invitee for the child "
                               "(co_guardian or viewer; the inviter is the primary).",
                               examples=["viewer"])
    invitation_id: Identifier = Field(description="The invitation to accept "
                                      "(AcceptInvitation, ListInvitations).",
                                      examples=["inv_req-5c2e"])
    invited_by: AccountId = Field(description="The inviting primary guardian's account.",
                                  examples=["acc_2b9e4d1c7a3f"])
    expires_at: UtcDatetime = Field(description="When the invitation lapses unless accepted.",
                                    examples=["2026-09-08T05:12:30Z"])
    at: UtcDatetime = Field(description="When the invitation was made.",
                            examples=["2026-09-01T05:12:30Z"])


class SecondFactorDisabled(Event):
    """The account's second factor (TOTP) was switched off: notify sends the parent a security
    message (it ignores quiet hours and cannot be muted). From now on the password alone logs
    in, until a new enrolment."""

    account_id: AccountId
    by_support: bool = Field(description="True when support reset it (ResetSecondFactor, every "
                             "session ended); False when the owner switched it off with the "
                             "password and a code (DisableTotp).", examples=[False])
    at: UtcDatetime


class RegistrationAttemptedForExistingAccount(Event):
    """Someone started a registration with the phone of this active account: notify tells the
    owner (security message). The caller got the same reply as for an unknown phone, and no
    code was sent; at most one such event per account and hour. Carries neither the phone nor
    anything the caller typed."""

    account_id: AccountId = Field(description="The existing account whose phone was used; "
                                  "the owner is told.", examples=["acc_7f3a9c2e1b4d"])
    at: UtcDatetime = Field(description="When the registration was attempted.",
                            examples=["2026-09-01T05:12:30Z"])


class RefreshTokenReused(Event):
    """A refresh token that had already been rotated away came back after its grace window:
    someone else may hold a copy, so the whole session (its refresh-token family) was ended.
    notify tells the owner (security message). Never carries a token or a token hash."""

    account_id: AccountId = Field(description="The owner of the ended session.",
                                  examples=["acc_7f3a9c2e1b4d"])
    session_id: Identifier = Field(description="The session that was ended (as in "
                                   "SessionsReply).", examples=["ses-8c1f2a"])
    at: UtcDatetime = Field(description="When the reuse was detected and the session ended.",
                            examples=["2026-09-01T05:12:30Z"])


class SessionEnded(Event):
    """Sessions of the account ended: one (``session_id``), or every one (``session_id`` None)
    but the session a password change keeps (``kept_session_id``). Emitted in the transaction
    that ended them; a session that runs out (idle or past its lifetime) is ended by auth's
    periodic sweep (reason ``expired``, within AUTH_SESSION_SWEEP_INTERVAL_S).
    notify deletes the push tokens registered from the ended sessions. Never carries a token."""

    account_id: AccountId = Field(description="The owner of the ended sessions.",
                                  examples=["acc_7f3a9c2e1b4d"])
    session_id: Identifier | None = Field(
        default=None, description="The one session that ended (as in SessionsReply and the "
        "access token's sid); None: every session of the account ended, "
        "kept_session_id excepted.", examples=["ses-8c1f2a"])
    kept_session_id: Identifier | None = Field(
        default=None, description="With session_id None: the one session that goes on (the "
        "caller's, after a password change); None when none does.", examples=[None])
    reason: str = Field(max_length=32, description="Why: logout, logout_everywhere, "
                        "refresh_token_reused, password_change, password_reset, "
                        "second_factor_reset, account_closed, account_disabled, "
                        "device_revoked, expired (the "
                        "refresh lifetime ran out; more may come: treat an unknown one as a "
                        "session end all the same).",
                        examples=["logout"])
    at: UtcDatetime = Field(description="When the sessions ended.",
                            examples=["2026-09-01T05:12:30Z"])


class ChildLinkRefused(Event):
    """A signed-in parent failed to prove they know a child (LinkChild with a wrong birth
    date or activation code; the caller only got child_proof_invalid, as for an unknown
    contract). The child's primary guardian is told (security message) on the first refusal
    in an hour of refusals; a child without a primary guardian has nobody to tell, so nothing
    is sent. Carries neither the proof tried nor who tried it."""

    account_id: AccountId = Field(description="The child's primary guardian, who is told.",
                                  examples=["acc_7f3a9c2e1b4d"])
    contract: ContractNumber = Field(description="The child's contract the link was tried "
                                     "for.", examples=["40012345"])
    failures_in_window: int = Field(ge=1, description="Refused proofs for this child in the "
                                    "last hour, this one included (10 lock the link for the "
                                    "rest of the hour).", examples=[1])
    at: UtcDatetime = Field(description="When the proof was refused.",
                            examples=["2026-09-01T05:12:30Z"])


class AccountClosed(Event):
    account_id: AccountId
    at: UtcDatetime


class GuardianContacts(Event):
    """Contacts and locale of a guardian, on the compacted ``auth.guardian-contacts.v1``
    (personal data: read by notify only). A null phone and e-mail tombstone a closed account."""

    account_id: AccountId
    phone: Phone | None = Field(description="Phone for SMS (E.164); None with a null e-mail "
                                "tombstones a closed account.", examples=["+79121234567"])
    email: Email | None = Field(default=None, description="E-mail for receipts and e-mail "
                                "notifications; None when not given.",
                                examples=["parent@example.ru"])
    locale: Locale = Field(default=Locale.RU, description="Language of the guardian's "
                           "notifications: ru or en.", examples=["ru"])
    time_zone: TimeZoneName = "Europe/Samara"
    updated_at: UtcDatetime
