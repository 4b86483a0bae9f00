"""Domain events of the auth service (past tense, frozen). They never carry a password, a
one-time code or a raw token; mapping to wire contracts happens outside the domain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .common import DomainEvent


@dataclass(frozen=True, kw_only=True)
class OneTimeCodeIssued(DomainEvent):
    """A code was generated for ``purpose``; the handler that generated it sends it to
    ``phone`` (or, for an e-mail confirmation, to ``email``) through the notify command topic
    (the code itself is not in this event)."""

    account_id: str
    purpose: str
    code_id: str
    phone: str | None
    expires_at: datetime
    email: str | None = None


@dataclass(frozen=True, kw_only=True)
class RegistrationAttemptedForExistingAccount(DomainEvent):
    """Someone started registration with the phone of an existing account (tell its owner)."""

    account_id: str


@dataclass(frozen=True, kw_only=True)
class AccountActivated(DomainEvent):
    account_id: str
    claimed_contract: str | None
    must_change_password: bool


@dataclass(frozen=True, kw_only=True)
class AccountProvisioned(DomainEvent):
    """A parent login created for a contract with the birth date as initial password."""

    account_id: str
    contract_number: str


@dataclass(frozen=True, kw_only=True)
class AccountLocked(DomainEvent):
    """Failed logins just closed the account's login to everyone but its trusted devices:
    the hourly ceiling filled (``until``: when it reopens by itself), or the wrong tries
    counted for good against a guessable password ran out (``until`` None: support unlocks).
    Recorded once per closing, at the failure that closed it."""

    account_id: str
    until: datetime | None


@dataclass(frozen=True, kw_only=True)
class AccountUnlocked(DomainEvent):
    """Support cleared the account's login throttles (``failures_cleared``: the wrong tries
    counted for good, e.g. against a birth-date password); the reason stays on the account."""

    account_id: str
    by_account_id: str
    failures_cleared: int


@dataclass(frozen=True, kw_only=True)
class StaffAccountCreated(DomainEvent):
    account_id: str
    role: str
    school_id: str | None


@dataclass(frozen=True, kw_only=True)
class IntegratorAccountCreated(DomainEvent):
    account_id: str
    scopes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LoginFailed(DomainEvent):
    account_id: str
    failures_in_window: int


@dataclass(frozen=True, kw_only=True)
class NewLoginDetected(DomainEvent):
    """Every successful login; ``new_device`` unless it presented the device token of one of
    the account's trusted devices (only then does the "new login" alert go out)."""

    account_id: str
    session_id: str
    device: str
    ip_hash: str
    new_device: bool


@dataclass(frozen=True, kw_only=True)
class SecondFactorEnabled(DomainEvent):
    account_id: str


@dataclass(frozen=True, kw_only=True)
class SecondFactorDisabled(DomainEvent):
    """TOTP was switched off: by its owner (password and a current code) or, ``via``
    "support", reset by support staff ``by_account_id`` after an identity check outside the
    system (the recorded reason stays on the account, never in an event)."""

    account_id: str
    via: str = "owner"  # "owner" | "support"
    by_account_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class PasswordChanged(DomainEvent):
    account_id: str
    via: str  # "change" | "reset"


@dataclass(frozen=True, kw_only=True)
class SessionsInvalidated(DomainEvent):
    """Every session of the account older than ``epoch`` ended (``kept_session_id`` excepted)."""

    account_id: str
    epoch: int
    reason: str
    kept_session_id: str | None


@dataclass(frozen=True, kw_only=True)
class SessionStarted(DomainEvent):
    account_id: str
    session_id: str
    absolute_expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class SessionRefreshed(DomainEvent):
    """The refresh token rotated; ``retry`` when it answered a retry inside the reuse grace
    window (a lost reply) rather than an ordinary refresh."""

    account_id: str
    session_id: str
    generation: int
    retry: bool = False


@dataclass(frozen=True, kw_only=True)
class SessionRevoked(DomainEvent):
    account_id: str
    session_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RefreshTokenReuseDetected(DomainEvent):
    """An already-rotated refresh token came back: the whole family was revoked."""

    account_id: str
    session_id: str
    presented_generation: int


@dataclass(frozen=True, kw_only=True)
class AccountDisabled(DomainEvent):
    account_id: str


@dataclass(frozen=True, kw_only=True)
class AccountEnabled(DomainEvent):
    account_id: str


@dataclass(frozen=True, kw_only=True)
class AccountClosed(DomainEvent):
    account_id: str


@dataclass(frozen=True, kw_only=True)
class PhoneChanged(DomainEvent):
    """The account's phone was added or changed (confirmed by a code sent to it)."""

    account_id: str


@dataclass(frozen=True, kw_only=True)
class EmailChanged(DomainEvent):
    """The account's e-mail was added or changed (confirmed by a code sent to it)."""

    account_id: str


@dataclass(frozen=True, kw_only=True)
class ProfileChanged(DomainEvent):
    """The account's language or time zone changed (notify writes in them)."""

    account_id: str


@dataclass(frozen=True, kw_only=True)
class CodeWordSet(DomainEvent):
    account_id: str


@dataclass(frozen=True, kw_only=True)
class ChildRegistered(DomainEvent):
    child_id: str
    contract_number: str
    school_id: str


@dataclass(frozen=True, kw_only=True)
class ContractReissued(DomainEvent):
    """New card/contract for the same child; guardians and history carry over."""

    child_id: str
    old_contract_number: str
    new_contract_number: str
    school_id: str
    guardians: tuple[tuple[str, str], ...]  # (account_id, role)


@dataclass(frozen=True, kw_only=True)
class GuardianLinked(DomainEvent):
    child_id: str
    contract_number: str
    account_id: str
    role: str
    via: str  # "contract_and_birth_date" | "activation_code" | "invitation"


@dataclass(frozen=True, kw_only=True)
class ChildLinkRefused(DomainEvent):
    """A wrong proof for the child from ``account_id``. ``alert_account_id`` is the primary
    guardian to tell: set on the first refusal of a failure window (at most one alert an
    hour, so a guesser cannot flood the parent), None when nobody is to be told."""

    child_id: str
    contract_number: str
    account_id: str
    failures_in_window: int
    alert_account_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChildProofsUnlocked(DomainEvent):
    """Support let proofs for the child be tried again (``birth_dates_cleared``: the refused
    birth dates that had counted for good)."""

    child_id: str
    by_account_id: str
    birth_dates_cleared: int


@dataclass(frozen=True, kw_only=True)
class GuardianInvited(DomainEvent):
    """``account_id``: the invitee, for an invitation addressed to an account (they are told
    and accept it); None for one held by a token sent out of band (nobody to tell)."""

    child_id: str
    contract_number: str
    invitation_id: str
    role: str
    invited_by: str
    expires_at: datetime
    account_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class GuardianInvitationRevoked(DomainEvent):
    child_id: str
    invitation_id: str
    revoked_by: str


@dataclass(frozen=True, kw_only=True)
class GuardianRoleChanged(DomainEvent):
    child_id: str
    contract_number: str
    account_id: str
    old_role: str
    new_role: str
    changed_by: str


@dataclass(frozen=True, kw_only=True)
class GuardianRemoved(DomainEvent):
    child_id: str
    contract_number: str
    account_id: str
    role: str
    removed_by: str
