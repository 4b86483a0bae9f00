"""The Account aggregate: parents, staff and integrator service accounts; registration,
login with throttling, one-time codes, password change and reset, TOTP, disable and close.

Password *hashing* and *verification* are not done here (they are slow, and handlers run them
off the event loop with ``services.auth.security``): callers pass a ready hash, or whether the
presented password matched. The domain decides what a result means.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from ..security import AccessClaims, AccessRole, ChildClaim, match_totp
from .codes import CodePurpose, OneTimeCode
from .common import (
    LIFETIME_FAILURE_LIMIT,
    AuthRejected,
    DomainEvent,
    FailureWindow,
    IdempotencyLog,
    LoginThrottle,
    Reason,
    code_throttle,
    date_from_doc,
    date_to_doc,
    dt_from_doc,
    fingerprint,
    opt_dt_from_doc,
    require_aware,
    require_support_reason,
)
from .devices import DeviceProof, TrustedDevices
from .events import (
    AccountActivated,
    AccountClosed,
    AccountDisabled,
    AccountEnabled,
    AccountLocked,
    AccountProvisioned,
    AccountUnlocked,
    CodeWordSet,
    EmailChanged,
    IntegratorAccountCreated,
    LoginFailed,
    NewLoginDetected,
    OneTimeCodeIssued,
    PasswordChanged,
    PhoneChanged,
    ProfileChanged,
    SecondFactorDisabled,
    SecondFactorEnabled,
    SessionsInvalidated,
    StaffAccountCreated,
)
from .passwords import PasswordContext, check_password, require_acceptable_password
from .sessions import Session

E164 = re.compile(r"\+[1-9]\d{7,14}")
CONTRACT_NUMBER = re.compile(r"\d{8}")
USERNAME = re.compile(r"[a-z][a-z0-9._\-]{2,63}")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}")
LOGIN_HISTORY_SIZE = 50
EXISTING_ACCOUNT_ALERT_COOLDOWN = timedelta(hours=1)
RESET_REASON_MIN_LENGTH = 10
FACTOR_RESETS_KEPT = 20
UNLOCKS_KEPT = 20
STAFF_ROLES = frozenset({AccessRole.SCHOOL_ADMIN, AccessRole.CANTEEN_OPERATOR,
                         AccessRole.TEACHER, AccessRole.SUPPORT})


class AccountKind(StrEnum):
    PARENT = "parent"
    STAFF = "staff"
    INTEGRATOR = "integrator"


class AccountStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DISABLED = "disabled"
    CLOSED = "closed"


def tombstone(account_id: str) -> str:
    """Value that replaces personal identifiers of a closed account (unique, says nothing)."""
    return f"closed:{account_id}"


def require_phone(phone: str) -> str:
    if not E164.fullmatch(phone):
        raise AuthRejected(Reason.INVALID_PHONE)
    return phone


def require_contract_number(contract_number: str) -> str:
    if not CONTRACT_NUMBER.fullmatch(contract_number):
        raise AuthRejected(Reason.INVALID_CONTRACT_NUMBER)
    return contract_number


def require_username(username: str) -> str:
    """Login names of staff and integrator accounts: lower-cased, never a phone, an e-mail or
    a contract number (so every login identifier names one kind of account)."""
    name = username.strip().lower()
    if not USERNAME.fullmatch(name) or CONTRACT_NUMBER.fullmatch(name):
        raise AuthRejected(Reason.INVALID_ROLE, "login names are 3-64 of a-z 0-9 . _ -")
    return name


def require_email(email: str) -> str:
    if not EMAIL.fullmatch(email):
        raise AuthRejected(Reason.INVALID_EMAIL)
    return email.lower()


@dataclass(frozen=True)
class Outcome:
    """Result of a keyed operation whose failure may still change state (an attempt counted).
    ``rejection`` None means success; ``replayed`` marks an idempotent replay."""

    rejection: Reason | None = None
    retry_after: timedelta | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.rejection is None

    def require_ok(self) -> None:
        """Raise the rejection (after the caller persisted what the attempt changed)."""
        if self.rejection is not None:
            raise AuthRejected(self.rejection, retry_after=self.retry_after)

    def to_doc(self) -> dict[str, Any]:
        return {
            "rejection": self.rejection.value if self.rejection else None,
            "retry_after_ms": (None if self.retry_after is None
                               else self.retry_after // timedelta(milliseconds=1)),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Outcome:
        retry = doc.get("retry_after_ms")
        return cls(
            rejection=Reason(doc["rejection"]) if doc.get("rejection") else None,
            retry_after=None if retry is None else timedelta(milliseconds=int(retry)),
            replayed=True,
        )


CODE_WORD_MIN_LENGTH = 6
DEFAULT_TIME_ZONE = "Europe/Samara"
LOCALES = frozenset({"ru", "en"})


def require_code_word(word: str) -> str:
    """A code word is a phrase the parent says or types: 6-64 characters (the contract bounds
    the length), spaces folded."""
    folded = " ".join(word.split())
    if len(folded) < CODE_WORD_MIN_LENGTH:
        raise AuthRejected(Reason.CODE_WORD_TOO_SHORT,
                           f"give at least {CODE_WORD_MIN_LENGTH} characters")
    return folded


@dataclass(frozen=True)
class ReauthProof:
    """What a sensitive command brought to re-authenticate, as the handler found it before
    its transaction (the password and the code word are verified there, slowly): which were
    given, which matched, and the authenticator code as typed (checked here, its step spent)."""

    password_given: bool = False
    password_ok: bool = False
    code_word_given: bool = False
    code_word_ok: bool = False
    totp: str | None = None

    @property
    def given(self) -> bool:
        return self.password_given or self.code_word_given or bool(self.totp)


@dataclass(frozen=True)
class PendingLink:
    """The child a registration names and its proof, kept on the pending account until the
    phone is confirmed: the birth date, or the pepper-keyed MAC of the activation code (the
    code itself is never stored)."""

    contract_number: str
    birth_date: date | None = None
    activation_mac: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"contract_number": self.contract_number,
                "birth_date": date_to_doc(self.birth_date) if self.birth_date else None,
                "activation_mac": self.activation_mac}

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> PendingLink | None:
        if not doc:
            return None
        born = doc.get("birth_date")
        return cls(str(doc["contract_number"]), date_from_doc(born) if born else None,
                   doc.get("activation_mac"))


@dataclass(frozen=True)
class LoginRecord:
    at: datetime
    success: bool
    device: str
    ip_hash: str
    session_id: str | None

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "success": self.success, "device": self.device,
                "ip_hash": self.ip_hash, "session_id": self.session_id}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LoginRecord:
        return cls(dt_from_doc(doc["at"]), bool(doc["success"]), str(doc["device"]),
                   str(doc["ip_hash"]), doc.get("session_id"))


@dataclass(frozen=True)
class FactorReset:
    """Audit of a second factor reset by support: when, by which support account, and the
    reason they recorded for it (personal data: never logged, dropped when the account
    closes)."""

    at: datetime
    by_account_id: str
    reason: str = field(repr=False)

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "by_account_id": self.by_account_id, "reason": self.reason}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FactorReset:
        return cls(dt_from_doc(doc["at"]), str(doc["by_account_id"]), str(doc["reason"]))


@dataclass(frozen=True)
class LoginReply:
    """What the caller of a login sees. Built only from (success, throttle state), so an
    unknown identifier and a wrong password produce equal replies."""

    ok: bool
    reason: Reason | None = None
    retry_after: timedelta | None = None
    session_id: str | None = None
    password_change_required: bool = False


@dataclass(frozen=True)
class _Contact:
    """A contact the owner changes with a code sent to the new value: the phone or the
    e-mail (the same rule, on its own fields)."""

    field: str
    pending: str
    purpose: CodePurpose
    taken: Reason
    changed: type[PhoneChanged] | type[EmailChanged]


_PHONE = _Contact("phone", "pending_phone", CodePurpose.PHONE_CONFIRMATION, Reason.PHONE_TAKEN,
                  PhoneChanged)
_EMAIL = _Contact("email", "pending_email", CodePurpose.EMAIL_CONFIRMATION, Reason.EMAIL_TAKEN,
                  EmailChanged)


@dataclass
class LoginOutcome:
    reply: LoginReply
    session: Session | None = None
    account: Account | None = None
    device_id: str | None = None
    """The trusted device the login came from (on success)."""
    new_device: bool = False
    """True when the device was trusted by this login: its new token goes to the client."""

    def require_session(self) -> tuple[Account, Session]:
        """The account and its new session; a refused login raises its reply's reason (after
        the caller persisted the failure it counted)."""
        if self.session is None or self.account is None:
            raise AuthRejected(self.reply.reason or Reason.INVALID_CREDENTIALS,
                               retry_after=self.reply.retry_after)
        return self.account, self.session


@dataclass
class Account:
    account_id: str
    kind: AccountKind
    role: AccessRole
    status: AccountStatus
    created_at: datetime
    phone: str | None = None
    email: str | None = None
    username: str | None = None
    locale: str = "ru"
    time_zone: str = DEFAULT_TIME_ZONE
    login_contract: str | None = None
    display_name: str | None = None
    password_hash: str | None = None
    must_change_password: bool = False
    password_changed_at: datetime | None = None
    claimed_contract: str | None = None
    pending_registration_id: str | None = None
    consent_at: datetime | None = None
    flagged_password_reason: Reason | None = None
    school_id: str | None = None
    operator_id: str | None = None
    scopes: tuple[str, ...] = ()
    codes: dict[CodePurpose, OneTimeCode] = field(default_factory=dict)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    code_failures: FailureWindow = field(default_factory=code_throttle)
    session_epoch: int = 0
    totp_secret: str | None = None
    totp_enabled: bool = False
    totp_last_step: int | None = None
    factor_resets: list[FactorReset] = field(default_factory=list)
    unlocks: list[FactorReset] = field(default_factory=list)
    login_history: list[LoginRecord] = field(default_factory=list)
    trusted_devices: TrustedDevices = field(default_factory=TrustedDevices)
    existing_account_alert_at: datetime | None = None
    closed_at: datetime | None = None
    pending_link: PendingLink | None = None
    pending_phone: str | None = None
    pending_email: str | None = None
    code_word_hash: str | None = None
    idempotency: IdempotencyLog = field(default_factory=IdempotencyLog)
    version: int = 0
    pending_events: list[DomainEvent] = field(default_factory=list, repr=False)

    # --- creation ---------------------------------------------------------------------------

    @classmethod
    def provision_for_contract(
        cls, *, account_id: str, contract_number: str, initial_password_hash: str, now: datetime
    ) -> Account:
        """A parent login keyed by contract number whose initial password is the child's birth
        date (DDMMYYYY): it works once, only to set a new password (``must_change_password``)."""
        now = require_aware(now)
        account = cls(
            account_id=account_id, kind=AccountKind.PARENT, role=AccessRole.PARENT,
            status=AccountStatus.ACTIVE, created_at=now,
            login_contract=require_contract_number(contract_number),
            claimed_contract=contract_number, password_hash=initial_password_hash,
            must_change_password=True,
        )
        account.pending_events.append(
            AccountProvisioned(occurred_at=now, account_id=account_id,
                               contract_number=contract_number)
        )
        return account

    @classmethod
    def create_staff(
        cls, *, account_id: str, role: AccessRole, school_id: str | None,
        initial_password_hash: str, now: datetime, email: str | None = None,
        username: str | None = None,
    ) -> Account:
        """Staff start with a password set by an administrator, so they must change it. They
        log in with an e-mail address or a login name (``username``)."""
        if (email is None) == (username is None):
            raise ValueError("give exactly one of email and username")
        if role not in STAFF_ROLES:
            raise AuthRejected(Reason.INVALID_ROLE, role.value)
        if role is not AccessRole.SUPPORT and school_id is None:
            raise AuthRejected(Reason.INVALID_ROLE, "school staff need a school")
        now = require_aware(now)
        account = cls(
            account_id=account_id, kind=AccountKind.STAFF, role=role,
            status=AccountStatus.ACTIVE, created_at=now,
            email=require_email(email) if email is not None else None,
            username=require_username(username) if username is not None else None,
            password_hash=initial_password_hash, must_change_password=True, school_id=school_id,
        )
        account.pending_events.append(
            StaffAccountCreated(occurred_at=now, account_id=account_id, role=role.value,
                                school_id=school_id)
        )
        return account

    @classmethod
    def create_integrator(
        cls, *, account_id: str, name: str, client_secret_hash: str, scopes: Sequence[str],
        operator_id: str, now: datetime,
    ) -> Account:
        """A service account; ``client_secret_hash`` plays the password's role in login. It
        acts for one transport operator, ``operator_id``, carried in its tokens: the services
        refuse it any other operator's data (``services.runtime.authorization``)."""
        if not operator_id:
            raise AuthRejected(Reason.INVALID_ROLE, "an integrator acts for an operator")
        now = require_aware(now)
        account = cls(
            account_id=account_id, kind=AccountKind.INTEGRATOR, role=AccessRole.INTEGRATOR,
            status=AccountStatus.ACTIVE, created_at=now, display_name=name,
            username=require_username(name), password_hash=client_secret_hash,
            scopes=tuple(sorted(set(scopes))), operator_id=operator_id,
        )
        account.pending_events.append(
            IntegratorAccountCreated(occurred_at=now, account_id=account_id,
                                     scopes=account.scopes)
        )
        return account

    @property
    def password_failures(self) -> FailureWindow:
        """Failed password checks of the last hour from every source (the account ceiling)."""
        return self.throttle.ceiling

    @property
    def password_is_guessable(self) -> bool:
        """The contract's initial password, the child's birth date, is still the password:
        anyone who knows or guesses the birth date can type it, so its wrong tries are
        limited for good, not per hour (``LIFETIME_FAILURE_LIMIT``)."""
        return self.must_change_password and self.login_contract is not None

    # --- guards -----------------------------------------------------------------------------

    def _require_not_closed(self) -> None:
        if self.status is AccountStatus.CLOSED:
            raise AuthRejected(Reason.ACCOUNT_CLOSED)

    def _require_active(self) -> None:
        self._require_not_closed()
        if self.status is not AccountStatus.ACTIVE:
            raise AuthRejected(Reason.ACCOUNT_NOT_ACTIVE)

    # --- one-time codes ---------------------------------------------------------------------

    def issue_code(
        self, *, purpose: CodePurpose, code_id: str, code: str, pepper: bytes, now: datetime,
        to: str | None = None, email: str | None = None,
    ) -> bool:
        """Issue a code unless one for ``purpose`` was issued less than 60 s ago (then nothing
        happens and False is returned; callers reply the same either way). A new code replaces
        the previous one for that purpose. It goes to the phone ``to`` (default: the
        account's), or with ``email`` to that address instead."""
        now = require_aware(now)
        current = self.codes.get(purpose)
        if current is not None and now < current.resend_available_at():
            return False
        issued = OneTimeCode.issue(code_id=code_id, account_id=self.account_id, purpose=purpose,
                                   code=code, pepper=pepper, now=now)
        self.codes[purpose] = issued
        self.pending_events.append(
            OneTimeCodeIssued(occurred_at=now, account_id=self.account_id, purpose=purpose.value,
                              code_id=code_id,
                              phone=None if email is not None else to or self.phone,
                              email=email, expires_at=issued.expires_at)
        )
        return True

    def _check_code(
        self, purpose: CodePurpose, code: str, pepper: bytes, now: datetime, *, consume: bool
    ) -> Outcome:
        """A one-time code is limited by its own attempts (5; a new code starts again), not by
        an account-wide window: guesses sent while no code is outstanding, or at an older
        code, never count against the code the owner is about to type."""
        current = self.codes.get(purpose)
        if current is None:
            return Outcome(Reason.CODE_INVALID)
        return Outcome(current.check(code, pepper, now, consume=consume))

    # --- registration -----------------------------------------------------------------------

    def confirm_registration(
        self, *, registration_id: str, code: str, pepper: bytes, now: datetime,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Activate a pending registration with its code. A wrong code counts an attempt and
        returns a rejection (persist the account); a replay with the same key returns the first
        outcome without counting again."""
        now = require_aware(now)
        fp = fingerprint(op="confirm", registration_id=registration_id,
                         code=_keyed_digest(pepper, code))
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        pending = self.status is AccountStatus.PENDING
        if not pending or registration_id != self.pending_registration_id:
            outcome = Outcome(Reason.CODE_INVALID)
        else:
            outcome = self._check_code(CodePurpose.REGISTRATION, code, pepper, now, consume=True)
            if outcome.ok:
                self.status = AccountStatus.ACTIVE
                self.pending_registration_id = None
                self.codes.pop(CodePurpose.REGISTRATION, None)
                # The password was kept although it contains the birth date, so that the start
                # reply stayed independent of what we know about the contract.
                self.must_change_password = self.flagged_password_reason is not None
                self.pending_events.append(
                    AccountActivated(occurred_at=now, account_id=self.account_id,
                                     claimed_contract=self.claimed_contract,
                                     must_change_password=self.must_change_password)
                )
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    # --- login ------------------------------------------------------------------------------

    def login_gate(self, now: datetime, source: str = "", *, trusted: bool = False,
                   device: DeviceProof | None = None) -> LoginReply | None:
        """A refusal to give *before* verifying the password (throttled for ``source``, see
        :class:`LoginThrottle`; a trusted ``device`` passes the account's ceiling), else None.
        Handlers call this first so that refused attempts never cost an argon2
        verification."""
        trusted = trusted or self.trusted_devices.is_trusted(device)
        gate = self.throttle.gate(source, now, trusted=trusted,
                                  lifetime_limited=self.password_is_guessable)
        if gate.allowed:
            return None
        return LoginReply(ok=False, reason=gate.reason, retry_after=gate.retry_after)

    def login(
        self, *, password_ok: bool, now: datetime, session_id: str, refresh_token_hash: str,
        device: str, ip_hash: str, totp_code: str | None = None, source: str = "",
        device_proof: DeviceProof | None = None,
    ) -> LoginOutcome:
        """Apply a password login whose verification result is ``password_ok``.

        Throttled attempts are refused without counting; a wrong password counts one failure
        for ``source`` (the keyed hash of the device and address) and in the account's ceiling
        (:class:`LoginThrottle`: no lockout by strangers; the owner's known sources pass the
        ceiling, time or a code-verified reset reopens). While the password is the contract's
        birth date, 10 wrong tries in total close the login until support unlocks it. A
        pending, disabled or closed account answers exactly as a wrong password. With TOTP
        enabled a right password is not enough: a missing code (``SECOND_FACTOR_REQUIRED``) or
        a wrong or already used one (``SECOND_FACTOR_INVALID``) counts one failure in the same
        windows, so guessing codes is throttled like guessing passwords. The code is looked at
        only after the password matched. Success clears its source's window (the ceiling is
        shared with whoever else guesses), trusts the device (``device_proof``: the token it
        presented, or a new one; ``domain.devices``), starts a session (restricted when a
        password change is due), appends to the login history and records
        ``NewLoginDetected`` (``new_device`` unless a trusted device's token was presented).
        """
        now = require_aware(now)
        refused = self.login_gate(now, source, device=device_proof)
        if refused is not None:
            return LoginOutcome(refused)
        if not password_ok or self.status is not AccountStatus.ACTIVE or self.password_hash is None:
            return LoginOutcome(self._login_failed(Reason.INVALID_CREDENTIALS, now, device,
                                                   ip_hash, source))
        if self.totp_enabled:
            second = self._second_factor(totp_code, now)
            if second is not None:
                return LoginOutcome(self._login_failed(second, now, device, ip_hash, source))
        self.throttle.succeeded(source)
        device_id, new_device = None, True  # without a proof nothing becomes trusted
        if device_proof is not None:
            trusted, new_device = self.trusted_devices.seen(device_proof, name=device, now=now)
            device_id = trusted.device_id
        session = Session.start(
            session_id=session_id, account_id=self.account_id, epoch=self.session_epoch,
            refresh_token_hash=refresh_token_hash, device=device, ip_hash=ip_hash, now=now,
            password_change_only=self.must_change_password, device_id=device_id,
        )
        self._remember_login(LoginRecord(now, True, session.device, ip_hash, session_id))
        self.pending_events.append(
            NewLoginDetected(occurred_at=now, account_id=self.account_id, session_id=session_id,
                             device=session.device, ip_hash=ip_hash,
                             new_device=new_device)
        )
        return LoginOutcome(
            LoginReply(ok=True, session_id=session_id,
                       password_change_required=self.must_change_password),
            session, self, device_id=device_id, new_device=new_device,
        )

    def _login_failed(self, reason: Reason, now: datetime, device: str,
                      ip_hash: str, source: str) -> LoginReply:
        self.throttle.record_failure(source, now)
        self._note_if_locked(now)
        if self.status is not AccountStatus.CLOSED:
            self._remember_login(LoginRecord(now, False, device[:256], ip_hash, None))
        self.pending_events.append(
            LoginFailed(occurred_at=now, account_id=self.account_id,
                        failures_in_window=self.password_failures.count(now))
        )
        return LoginReply(ok=False, reason=reason)

    def _note_if_locked(self, now: datetime) -> None:
        """``AccountLocked`` when the failure just recorded closed the login: exactly at the
        limit, so a closing is told once (refused attempts are not counted further)."""
        if self.status is not AccountStatus.ACTIVE:
            return
        if (self.password_is_guessable
                and self.throttle.lifetime_failures == LIFETIME_FAILURE_LIMIT):
            self.pending_events.append(AccountLocked(occurred_at=now,
                                                     account_id=self.account_id, until=None))
        elif self.throttle.failures(now) == self.throttle.ceiling.limit:
            ceiling = self.throttle.ceiling
            oldest = min(t for t in ceiling.failures if t > now - ceiling.window)
            self.pending_events.append(AccountLocked(occurred_at=now, account_id=self.account_id,
                                                     until=oldest + ceiling.window))

    def _remember_login(self, record: LoginRecord) -> None:
        self.login_history.append(record)
        del self.login_history[: max(0, len(self.login_history) - LOGIN_HISTORY_SIZE)]

    def history(self) -> list[LoginRecord]:
        """Login history, newest first."""
        return list(reversed(self.login_history))

    # --- second factor (TOTP) ---------------------------------------------------------------

    def begin_totp_enrolment(
        self, *, session: Session, current_password_ok: bool, secret_b32: str, now: datetime,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Keep ``secret_b32`` as the candidate TOTP secret; it protects logins only after
        :meth:`confirm_totp`.

        Binding a factor needs the current password again: a stolen access token alone must
        not be able to enrol a secret the owner does not hold and so lock them out. A wrong
        password counts as a failed login (and is throttled like one). A retry with the same
        key keeps the first candidate, so the secret the client shows is the one that
        confirms. Service accounts have no second factor.
        """
        now = require_aware(now)
        self._require_active()
        if self.kind is AccountKind.INTEGRATOR:
            raise AuthRejected(Reason.WRONG_ACCOUNT_KIND)
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        if self.totp_enabled:
            raise AuthRejected(Reason.SECOND_FACTOR_ALREADY_ENABLED)
        fp = fingerprint(op="begin_totp", session=session.session_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        refused = self.login_gate(now, _session_source(session), trusted=True)
        if refused is not None:
            return Outcome(refused.reason, refused.retry_after)
        if not current_password_ok:
            self.throttle.record_failure(_session_source(session), now)
            outcome = Outcome(Reason.INVALID_CREDENTIALS)
        else:
            self.totp_secret = secret_b32
            self.totp_last_step = None
            outcome = Outcome()
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def _second_factor(self, code: str | None, now: datetime) -> Reason | None:
        """Why ``code`` does not complete a login (None: it does, and its step is spent)."""
        if not code:
            return Reason.SECOND_FACTOR_REQUIRED
        step = self._new_totp_step(code, now)
        if step is None:
            return Reason.SECOND_FACTOR_INVALID
        self.totp_last_step = step
        return None

    def _new_totp_step(self, code: str, now: datetime) -> int | None:
        """The step ``code`` belongs to, unless it is wrong or not newer than the last accepted
        step (a replay of a seen code)."""
        if self.totp_secret is None:
            return None
        step = match_totp(self.totp_secret, code, now)
        if step is None or (self.totp_last_step is not None and step <= self.totp_last_step):
            return None
        return step

    def _accept_totp(self, code: str, now: datetime) -> Outcome:
        """A TOTP code outside login (confirming or removing the factor): throttled and counted
        in the code window."""
        gate = self.code_failures.gate(now)
        if not gate.allowed:
            return Outcome(gate.reason, gate.retry_after)
        if self.totp_secret is None:
            return Outcome(Reason.SECOND_FACTOR_NOT_ENABLED)
        step = self._new_totp_step(code, now)
        if step is None:
            self.code_failures.record_failure(now)
            return Outcome(Reason.SECOND_FACTOR_INVALID)
        self.totp_last_step = step
        return Outcome()

    def confirm_totp(
        self, *, session: Session, code: str, now: datetime, idempotency_key: str | None = None,
    ) -> Outcome:
        """Switch TOTP on with the first code of the candidate secret; from then on every login
        needs a code. A wrong code is counted (persist the account); a retry with the same key
        returns the first outcome."""
        now = require_aware(now)
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        fp = fingerprint(op="confirm_totp", session=session.session_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        if self.totp_enabled:
            raise AuthRejected(Reason.SECOND_FACTOR_ALREADY_ENABLED)
        outcome = self._accept_totp(code, now)
        if outcome.ok:
            self.totp_enabled = True
            self.pending_events.append(SecondFactorEnabled(occurred_at=now,
                                                           account_id=self.account_id))
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def disable_totp(
        self, *, session: Session, current_password_ok: bool, code: str | None, now: datetime,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Switch TOTP off from a fully authenticated session: the owner proves both factors
        again, the current password and a current code (a stolen access token, or a password
        alone, must not be able to strip the factor).

        Both checks count in the login's failure window and are gated by it, exactly like a
        login: a wrong password (``INVALID_CREDENTIALS``; the code is then not looked at nor
        spent), a missing code (``SECOND_FACTOR_REQUIRED``), a wrong or already used one
        (``SECOND_FACTOR_INVALID``). Refusals are returned (persist the account); a retry with
        the same key returns the first outcome. Other sessions are kept: they were opened with
        the factor.
        """
        now = require_aware(now)
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        fp = fingerprint(op="disable_totp", session=session.session_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        if not self.totp_enabled:
            raise AuthRejected(Reason.SECOND_FACTOR_NOT_ENABLED)
        refused = self.login_gate(now, _session_source(session), trusted=True)
        if refused is not None:
            return Outcome(refused.reason, refused.retry_after)
        rejection = (Reason.INVALID_CREDENTIALS if not current_password_ok
                     else self._second_factor(code, now))
        if rejection is not None:
            self.throttle.record_failure(_session_source(session), now)
            outcome = Outcome(rejection)
        else:
            self._drop_totp()
            self.pending_events.append(SecondFactorDisabled(occurred_at=now,
                                                            account_id=self.account_id))
            outcome = Outcome()
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def reset_second_factor(
        self, *, by_account_id: str, reason: str, now: datetime,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Support's recovery for a parent who lost the authenticator: TOTP is removed after an
        identity check made outside the system (authorising the caller as support is the
        handler's job; this records who did it and why).

        ``reason`` is mandatory (at least 10 characters once trimmed) and kept on the account
        with the time and the support account (the last 20 resets), never in an event. Every
        session ends, since one of them may be the reason the parent called, and the login
        failure window is cleared, so the parent can log in with the password at once. A retry
        with the same key returns the first outcome; a parent without TOTP is refused.
        """
        now = require_aware(now)
        fp = fingerprint(op="reset_second_factor", by=by_account_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        self._require_not_closed()
        if self.kind is not AccountKind.PARENT:
            raise AuthRejected(Reason.WRONG_ACCOUNT_KIND)
        why = " ".join(reason.split())
        if len(why) < RESET_REASON_MIN_LENGTH:
            raise AuthRejected(Reason.RESET_REASON_REQUIRED,
                               f"give at least {RESET_REASON_MIN_LENGTH} characters")
        if not self.totp_enabled:
            raise AuthRejected(Reason.SECOND_FACTOR_NOT_ENABLED)
        self._drop_totp()
        self.throttle.clear()
        self.factor_resets.append(FactorReset(at=now, by_account_id=by_account_id, reason=why))
        del self.factor_resets[: max(0, len(self.factor_resets) - FACTOR_RESETS_KEPT)]
        self.pending_events.append(SecondFactorDisabled(occurred_at=now,
                                                        account_id=self.account_id,
                                                        via="support",
                                                        by_account_id=by_account_id))
        self._invalidate_sessions(now, "second_factor_reset", None)
        outcome = Outcome()
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def unlock(
        self, *, by_account_id: str, reason: str, now: datetime,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Support clears every login throttle of the account (all sources, the ceiling and
        the lifetime count of a birth-date password) after checking the owner's identity
        outside the system; the one-time-code and authenticator windows too. ``reason`` is
        mandatory (at least 10 characters) and kept with the support account and the time
        (the last 20, never in an event); ``AccountUnlocked`` records it happened. Known
        sources stay. A retry with the same key returns the first outcome."""
        now = require_aware(now)
        fp = fingerprint(op="unlock", by=by_account_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        self._require_not_closed()
        why = require_support_reason(reason)
        failures = self.throttle.lifetime_failures
        self.throttle.clear()
        self.code_failures.clear()
        self.unlocks.append(FactorReset(at=now, by_account_id=by_account_id, reason=why))
        del self.unlocks[: max(0, len(self.unlocks) - UNLOCKS_KEPT)]
        self.pending_events.append(AccountUnlocked(occurred_at=now, account_id=self.account_id,
                                                   by_account_id=by_account_id,
                                                   failures_cleared=failures))
        outcome = Outcome()
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def _drop_totp(self) -> None:
        self.totp_enabled = False
        self.totp_secret = None
        self.totp_last_step = None

    # --- passwords --------------------------------------------------------------------------

    def password_context(self, birth_dates: Sequence[date] = ()) -> PasswordContext:
        contracts = [c for c in (self.claimed_contract, self.login_contract) if c]
        return PasswordContext(phone=self.phone, contract_numbers=tuple(contracts),
                               birth_dates=tuple(birth_dates))

    def change_password(
        self, *, current_password_ok: bool, new_password: str, new_password_hash: str,
        new_password_matches_current: bool, session: Session, now: datetime,
        birth_dates: Sequence[date] = (), idempotency_key: str | None = None,
    ) -> Outcome:
        """Change the password from an authenticated session (current password required).

        A wrong current password counts as a failed login (and is throttled like one). On
        success every other session ends (epoch raised) and ``session`` is kept, moved to the
        new epoch and freed from a forced-change restriction. Policy violations raise.
        """
        now = require_aware(now)
        fp = fingerprint(op="change_password", session=session.session_id)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_active(now, self.session_epoch)
        if session.second_factor_pending:
            raise AuthRejected(Reason.SECOND_FACTOR_REQUIRED)
        refused = self.login_gate(now, _session_source(session), trusted=True)
        if refused is not None:
            return Outcome(refused.reason, refused.retry_after)
        if not current_password_ok:
            self.throttle.record_failure(_session_source(session), now)
            outcome = Outcome(Reason.INVALID_CREDENTIALS)
            self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
            return outcome
        self._require_acceptable(new_password, birth_dates)
        if new_password_matches_current:
            raise AuthRejected(Reason.PASSWORD_UNCHANGED)
        self._set_password(new_password_hash, now, via="change", keep=session)
        outcome = Outcome()
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def reset_password(
        self, *, code: str, pepper: bytes, new_password: str, new_password_hash: str,
        now: datetime, birth_dates: Sequence[date] = (), idempotency_key: str | None = None,
    ) -> Outcome:
        """Set a new password with a password-reset code: the owner's way out of a throttled
        login. Ends every session, clears the password failure window and any forced change.
        A policy violation raises without spending the code (the owner picks another one)."""
        now = require_aware(now)
        fp = fingerprint(op="reset_password", code=_keyed_digest(pepper, code))
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        if self.status is not AccountStatus.ACTIVE:
            outcome = Outcome(Reason.CODE_INVALID)
        else:
            outcome = self._check_code(CodePurpose.PASSWORD_RESET, code, pepper, now,
                                       consume=False)
            if outcome.ok:
                self._require_acceptable(new_password, birth_dates)
                self._check_code(CodePurpose.PASSWORD_RESET, code, pepper, now, consume=True)
                self.codes.pop(CodePurpose.PASSWORD_RESET, None)
                self.throttle.clear()
                self._set_password(new_password_hash, now, via="reset", keep=None)
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def _require_acceptable(self, password: str, birth_dates: Sequence[date]) -> None:
        reasons = check_password(password, self.password_context(birth_dates))
        if reasons:
            raise AuthRejected(reasons[0], reasons=tuple(reasons))

    def _set_password(
        self, password_hash: str, now: datetime, *, via: str, keep: Session | None
    ) -> None:
        self.password_hash = password_hash
        self.password_changed_at = now
        self.must_change_password = False
        self.flagged_password_reason = None
        self.pending_events.append(PasswordChanged(occurred_at=now, account_id=self.account_id,
                                                   via=via))
        self._invalidate_sessions(now, f"password_{via}", keep)

    def rehash_password(self, new_password_hash: str) -> None:
        """Replace a hash made with outdated parameters after a successful login."""
        self._require_active()
        self.password_hash = new_password_hash

    # --- sessions, disable, close -----------------------------------------------------------

    def _invalidate_sessions(self, now: datetime, reason: str, keep: Session | None) -> None:
        self.session_epoch += 1
        if keep is not None:
            keep.epoch = self.session_epoch
            keep.password_change_only = False
        self.pending_events.append(
            SessionsInvalidated(occurred_at=now, account_id=self.account_id,
                                epoch=self.session_epoch, reason=reason,
                                kept_session_id=keep.session_id if keep else None)
        )

    def log_out_everywhere(self, now: datetime) -> None:
        """End every session of the account, including the caller's."""
        self._require_not_closed()
        self._invalidate_sessions(require_aware(now), "logout_everywhere", None)

    def end_session(self, session: Session | None, now: datetime) -> bool:
        """End one of this account's sessions, chosen from the list (the others stay). A
        session of another account reads as missing; ending an ended one is a no-op (False)."""
        self._require_not_closed()
        if session is None or session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        return session.revoke(require_aware(now), "ended_by_owner")

    def revoke_trusted_device(self, device_id: str, sessions: Iterable[Session],
                              now: datetime, idempotency_key: str | None = None
                              ) -> list[Session]:
        """Stop trusting one device and end the live sessions logged in from it (a lost phone
        stays signed in no longer); the ended sessions are returned to be saved, each with its
        ``SessionRevoked`` (reason ``device_revoked``). Sessions already over (ended, of an
        older epoch, or expired: the expiry sweep reports those) are left as they are, so no
        session ends twice.

        A retry with the same key (the client's request id) changes nothing and returns no
        session: it was answered already; the same key for another device is
        ``IDEMPOTENCY_KEY_REUSED``. A device no longer trusted under another key:
        ``DEVICE_NOT_FOUND``. Sessions stored before sessions recorded their device carry
        none and are left alone, and so are the sessions of a device forgotten for the
        20-device limit (EndSession ends them)."""
        now = require_aware(now)
        fp = fingerprint(op="revoke_trusted_device", device=device_id)
        if self.idempotency.replay(idempotency_key, fp) is not None:
            return []
        self._require_not_closed()
        self.trusted_devices.revoke(device_id)
        ended = [s for s in sessions
                 if s.account_id == self.account_id and s.device_id == device_id
                 and s.is_active(now, self.session_epoch) and s.revoke(now, "device_revoked")]
        self.idempotency.remember(idempotency_key, fp, {"ended": len(ended)})
        return ended

    # --- re-authentication, code word, phone ------------------------------------------------

    def reauthenticate(self, *, session: Session, proof: ReauthProof, now: datetime) -> Outcome:
        """A sensitive change asks the owner again: the password, the code word or a fresh
        authenticator code (the access token alone is not enough). None given:
        ``REAUTHENTICATION_REQUIRED`` (raised, nothing counted). A wrong one counts as a
        failed login from this session and is gated like one (returned: persist the
        account). An authenticator code is looked at only when nothing else matched, and its
        step is spent."""
        now = require_aware(now)
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        if not proof.given:
            raise AuthRejected(Reason.REAUTHENTICATION_REQUIRED)
        refused = self.login_gate(now, _session_source(session), trusted=True)
        if refused is not None:
            return Outcome(refused.reason, refused.retry_after)
        matched = (proof.password_ok or (proof.code_word_ok and self.code_word_hash is not None)
                   or (self.totp_enabled and bool(proof.totp)
                       and self._second_factor(proof.totp, now) is None))
        if not matched:
            self.throttle.record_failure(_session_source(session), now)
            return Outcome(Reason.INVALID_CREDENTIALS)
        return Outcome()

    def set_code_word(self, *, session: Session, proof: ReauthProof, code_word: str,
                      code_word_hash: str, now: datetime) -> Outcome:
        """Set or replace the code word (kept only as ``code_word_hash``, hashed like a
        password) after re-authentication."""
        require_code_word(code_word)
        outcome = self.reauthenticate(session=session, proof=proof, now=now)
        if outcome.ok:
            self.code_word_hash = code_word_hash
            self.pending_events.append(CodeWordSet(occurred_at=require_aware(now),
                                                   account_id=self.account_id))
        return outcome

    def start_phone_change(self, *, session: Session, proof: ReauthProof, phone: str,
                           code_id: str, code: str, pepper: bytes, now: datetime) -> Outcome:
        """Send a code to ``phone`` to add it (an account created by contract has none: its
        live session is enough) or to replace the current one (re-authentication first).
        Nothing changes until :meth:`confirm_phone_change`; within the resend cooldown no new
        code goes out (the outcome is the same)."""
        require_phone(phone)
        return self._start_contact_change(_PHONE, phone, session=session, proof=proof,
                                          code_id=code_id, code=code, pepper=pepper, now=now)

    def confirm_phone_change(self, *, code: str, pepper: bytes, now: datetime,
                             phone_taken: bool, idempotency_key: str | None = None) -> Outcome:
        """Set the pending phone with the code sent to it (5 attempts, 5 minutes, once). A
        phone another account holds (``phone_taken``) is refused ``PHONE_TAKEN`` only after
        the right code: only its holder learns that. A retry with the same key replays."""
        return self._confirm_contact_change(_PHONE, code=code, pepper=pepper, now=now,
                                            taken=phone_taken, idempotency_key=idempotency_key)

    def start_email_change(self, *, session: Session, proof: ReauthProof, email: str,
                           code_id: str, code: str, pepper: bytes, now: datetime) -> Outcome:
        """Send a code to the new ``email`` to add it (the live session is enough) or to
        replace the current one (re-authentication first, as for the phone). Nothing changes
        until :meth:`confirm_email_change`; within the resend cooldown no new code goes out
        (the outcome is the same)."""
        return self._start_contact_change(_EMAIL, require_email(email), session=session,
                                          proof=proof, code_id=code_id, code=code,
                                          pepper=pepper, now=now)

    def confirm_email_change(self, *, code: str, pepper: bytes, now: datetime,
                             email_taken: bool, idempotency_key: str | None = None) -> Outcome:
        """Set the pending e-mail with the code sent to it (5 attempts, 5 minutes, once). An
        e-mail another account holds (``email_taken``) is refused ``EMAIL_TAKEN`` only after
        the right code: only its holder learns that. A retry with the same key replays."""
        return self._confirm_contact_change(_EMAIL, code=code, pepper=pepper, now=now,
                                            taken=email_taken, idempotency_key=idempotency_key)

    def _start_contact_change(self, contact: _Contact, value: str, *, session: Session,
                              proof: ReauthProof, code_id: str, code: str, pepper: bytes,
                              now: datetime) -> Outcome:
        now = require_aware(now)
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        current = getattr(self, contact.field)
        if current is not None:
            outcome = self.reauthenticate(session=session, proof=proof, now=now)
            if not outcome.ok:
                return outcome
        address = {"email": value} if contact.field == "email" else {"to": value}
        if value != current and self.issue_code(purpose=contact.purpose, code_id=code_id,
                                                code=code, pepper=pepper, now=now, **address):
            setattr(self, contact.pending, value)
        return Outcome()

    def _confirm_contact_change(self, contact: _Contact, *, code: str, pepper: bytes,
                                now: datetime, taken: bool,
                                idempotency_key: str | None) -> Outcome:
        now = require_aware(now)
        self._require_active()
        fp = fingerprint(op=f"confirm_{contact.field}", code=_keyed_digest(pepper, code))
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return Outcome.from_doc(stored)
        pending = getattr(self, contact.pending)
        if pending is None:
            outcome = Outcome(Reason.CODE_INVALID)
        else:
            outcome = self._check_code(contact.purpose, code, pepper, now, consume=True)
            if outcome.ok and taken:
                outcome = Outcome(contact.taken)
            elif outcome.ok:
                setattr(self, contact.field, pending)
                self.pending_events.append(contact.changed(occurred_at=now,
                                                           account_id=self.account_id))
            if outcome.ok or outcome.rejection is contact.taken:
                setattr(self, contact.pending, None)
                self.codes.pop(contact.purpose, None)
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    @property
    def holds_contract_provisionally(self) -> bool:
        """The login the issuer created for a contract (by contract number and birth date)
        that has not added and confirmed a phone yet: a parent who proves the child with the
        issuer's activation code takes the child from it (:meth:`Child.link_with_proof`)."""
        return (self.kind is AccountKind.PARENT and self.login_contract is not None
                and self.phone is None and self.status is not AccountStatus.CLOSED)

    def give_way_to_activation_code(self, now: datetime) -> bool:
        """The provisional contract login loses its child to a parent with the activation
        code: it is closed (every session ends, its login by contract number is freed, its
        data minimised). False, nothing done, for any other account: a real parent keeps
        the child."""
        if not self.holds_contract_provisionally:
            return False
        return self.close(now)

    def update_profile(self, *, locale: str | None, time_zone: str | None,
                       now: datetime) -> bool:
        """The language and the time zone messages are written in (None: unchanged). False
        when nothing changed (no event)."""
        now = require_aware(now)
        self._require_active()
        if locale is not None and locale not in LOCALES:
            raise AuthRejected(Reason.INVALID_LOCALE, "ru or en")
        new = (locale or self.locale, time_zone or self.time_zone)
        if new == (self.locale, self.time_zone):
            return False
        self.locale, self.time_zone = new
        self.pending_events.append(ProfileChanged(occurred_at=now, account_id=self.account_id))
        return True

    def close_by_owner(self, *, session: Session, proof: ReauthProof, now: datetime) -> Outcome:
        """The owner closes the account after re-authentication (:meth:`close`); closing a
        closed account is answered as done."""
        if self.status is AccountStatus.CLOSED:
            return Outcome()
        outcome = self.reauthenticate(session=session, proof=proof, now=now)
        if outcome.ok:
            self.close(now)
        return outcome

    def log_out(self, session: Session, *, everywhere: bool, now: datetime) -> None:
        """End the caller's ``session``, or with ``everywhere`` every session of the account."""
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        if everywhere:
            self.log_out_everywhere(now)
        else:
            session.revoke(now, "logout")

    def disable(self, now: datetime) -> None:
        now = require_aware(now)
        self._require_not_closed()
        if self.status is AccountStatus.DISABLED:
            return
        self.status = AccountStatus.DISABLED
        self.pending_events.append(AccountDisabled(occurred_at=now, account_id=self.account_id))
        self._invalidate_sessions(now, "account_disabled", None)

    def enable(self, now: datetime) -> None:
        now = require_aware(now)
        self._require_not_closed()
        if self.status is not AccountStatus.DISABLED:
            return
        self.status = AccountStatus.ACTIVE
        self.pending_events.append(AccountEnabled(occurred_at=now, account_id=self.account_id))

    def close(self, now: datetime) -> bool:
        """Close for good: every session ends and personal data is minimised (phone and e-mail
        become a tombstone; password, factors and their reset audit, codes, history and contract
        claims are dropped).
        Closing a closed account is a no-op returning False."""
        now = require_aware(now)
        if self.status is AccountStatus.CLOSED:
            return False
        self._invalidate_sessions(now, "account_closed", None)
        self.status = AccountStatus.CLOSED
        self.closed_at = now
        self.phone = tombstone(self.account_id) if self.phone is not None else None
        self.email = tombstone(self.account_id) if self.email is not None else None
        self.login_contract = None
        self.claimed_contract = None
        self.display_name = None
        self.password_hash = None
        self.must_change_password = False
        self.flagged_password_reason = None
        self.pending_registration_id = None
        self.totp_secret = None
        self.totp_enabled = False
        self.totp_last_step = None
        self.factor_resets.clear()
        self.codes.clear()
        self.login_history.clear()
        self.trusted_devices.clear()
        self.throttle = LoginThrottle()
        self.code_failures.clear()
        self.unlocks.clear()
        self.existing_account_alert_at = None
        self.pending_link = None
        self.pending_phone = None
        self.pending_email = None
        self.code_word_hash = None
        self.pending_events.append(AccountClosed(occurred_at=now, account_id=self.account_id))
        return True

    def access_claims(
        self, *, session: Session, children: Sequence[ChildClaim], now: datetime
    ) -> AccessClaims:
        """Claims for an access token: only for an active account and a fully authenticated
        session of it. Issuing counts as session activity."""
        self._require_active()
        if session.account_id != self.account_id:
            raise AuthRejected(Reason.SESSION_NOT_FOUND)
        session.require_full_access(now, self.session_epoch)
        session.touch(now, self.session_epoch)
        kids = tuple(children) if self.kind is AccountKind.PARENT else ()
        return AccessClaims(sub=self.account_id, sid=session.session_id, role=self.role,
                            children=kids, school_id=self.school_id,
                            operator_id=self.operator_id)

    def login_claims(
        self, *, session: Session, children: Sequence[ChildClaim], now: datetime
    ) -> AccessClaims:
        """Claims for the token handed out at login or refresh. A session restricted to a
        forced password change gets a token without children: it can change the password at
        auth and do nothing for any child anywhere else."""
        if session.password_change_only and not session.second_factor_pending:
            self._require_active()
            if session.account_id != self.account_id:
                raise AuthRejected(Reason.SESSION_NOT_FOUND)
            session.touch(now, self.session_epoch)
            return AccessClaims(sub=self.account_id, sid=session.session_id, role=self.role,
                                school_id=self.school_id, operator_id=self.operator_id)
        return self.access_claims(session=session, children=children, now=now)

    def pull_events(self) -> list[DomainEvent]:
        events, self.pending_events = self.pending_events, []
        return events

    # --- persistence ------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.account_id,
            "kind": self.kind.value,
            "role": self.role.value,
            "status": self.status.value,
            "created_at": self.created_at,
            "phone": self.phone,
            "email": self.email,
            "username": self.username,
            "locale": self.locale,
            "time_zone": self.time_zone,
            "login_contract": self.login_contract,
            "display_name": self.display_name,
            "password_hash": self.password_hash,
            "must_change_password": self.must_change_password,
            "password_changed_at": self.password_changed_at,
            "claimed_contract": self.claimed_contract,
            "pending_registration_id": self.pending_registration_id,
            "consent_at": self.consent_at,
            "flagged_password_reason": (self.flagged_password_reason.value
                                        if self.flagged_password_reason else None),
            "school_id": self.school_id,
            "operator_id": self.operator_id,
            "scopes": list(self.scopes),
            "codes": {p.value: c.to_doc() for p, c in self.codes.items()},
            **self.throttle.to_doc(),
            "code_failures": self.code_failures.to_doc(),
            "session_epoch": self.session_epoch,
            "totp_secret": self.totp_secret,
            "totp_enabled": self.totp_enabled,
            "totp_last_step": self.totp_last_step,
            "factor_resets": [r.to_doc() for r in self.factor_resets],
            "unlocks": [r.to_doc() for r in self.unlocks],
            "login_history": [r.to_doc() for r in self.login_history],
            "trusted_devices": self.trusted_devices.to_doc(),
            "existing_account_alert_at": self.existing_account_alert_at,
            "closed_at": self.closed_at,
            "pending_link": self.pending_link.to_doc() if self.pending_link else None,
            "pending_phone": self.pending_phone,
            "pending_email": self.pending_email,
            "code_word_hash": self.code_word_hash,
            "idempotency": self.idempotency.to_doc(),
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Account:
        flagged = doc.get("flagged_password_reason")
        return cls(
            account_id=str(doc["_id"]),
            kind=AccountKind(doc["kind"]),
            role=AccessRole(doc["role"]),
            status=AccountStatus(doc["status"]),
            created_at=dt_from_doc(doc["created_at"]),
            phone=doc.get("phone"),
            email=doc.get("email"),
            username=doc.get("username"),
            locale=str(doc.get("locale") or "ru"),
            time_zone=str(doc.get("time_zone") or DEFAULT_TIME_ZONE),
            login_contract=doc.get("login_contract"),
            display_name=doc.get("display_name"),
            password_hash=doc.get("password_hash"),
            must_change_password=bool(doc["must_change_password"]),
            password_changed_at=opt_dt_from_doc(doc.get("password_changed_at")),
            claimed_contract=doc.get("claimed_contract"),
            pending_registration_id=doc.get("pending_registration_id"),
            consent_at=opt_dt_from_doc(doc.get("consent_at")),
            flagged_password_reason=Reason(flagged) if flagged else None,
            school_id=doc.get("school_id"),
            operator_id=doc.get("operator_id"),
            scopes=tuple(doc.get("scopes", ())),
            codes={CodePurpose(p): OneTimeCode.from_doc(c)
                   for p, c in doc.get("codes", {}).items()},
            throttle=LoginThrottle.from_doc(doc),
            code_failures=code_throttle().load(doc.get("code_failures")),
            session_epoch=int(doc["session_epoch"]),
            totp_secret=doc.get("totp_secret"),
            totp_enabled=bool(doc["totp_enabled"]),
            totp_last_step=doc.get("totp_last_step"),
            factor_resets=[FactorReset.from_doc(r) for r in doc.get("factor_resets", [])],
            unlocks=[FactorReset.from_doc(r) for r in doc.get("unlocks", [])],
            login_history=[LoginRecord.from_doc(r) for r in doc.get("login_history", [])],
            trusted_devices=TrustedDevices.from_doc(doc.get("trusted_devices")),
            existing_account_alert_at=opt_dt_from_doc(doc.get("existing_account_alert_at")),
            closed_at=opt_dt_from_doc(doc.get("closed_at")),
            pending_link=PendingLink.from_doc(doc.get("pending_link")),
            pending_phone=doc.get("pending_phone"),
            pending_email=doc.get("pending_email"),
            code_word_hash=doc.get("code_word_hash"),
            idempotency=IdempotencyLog.from_doc(doc.get("idempotency")),
            version=int(doc["version"]),
        )


def phone_hint(phone: str | None) -> str:
    """A phone as other guardians see it: the country code and the last 4 digits."""
    if phone is None or not E164.fullmatch(phone):
        return ""
    return f"{phone[:2]}{'*' * (len(phone) - 6)}{phone[-4:]}"


def require_live_session(account: Account | None, session: Session | None,
                         now: datetime) -> tuple[Account, Session]:
    """The account and session an access token names, while the session is alive. Every
    command that carries a token passes here: the token lives 5 minutes, and a session ended
    meanwhile (logout, password change, closing, a support reset) must stop auth's own
    commands at once. A session that is missing or belongs to another account is
    ``SESSION_NOT_FOUND``; an ended one says why (revoked, idle, past its lifetime)."""
    if account is None or session is None or session.account_id != account.account_id:
        raise AuthRejected(Reason.SESSION_NOT_FOUND)
    session.require_active(now, account.session_epoch)
    return account, session


def invitee(account: Account | None) -> Account:
    """The account a guardian invitation names by phone: an active one, else
    ``INVITATION_INVALID``."""
    if account is None or account.status is not AccountStatus.ACTIVE:
        raise AuthRejected(Reason.INVITATION_INVALID, "no active account for this phone")
    return account


def create_staff_account(
    *, already_created: bool, account_id: str, role: AccessRole, login: str, login_field: str,
    login_value: str, login_taken: bool, school_id: str | None, password: str,
    password_hash: str, now: datetime, operator_id: str | None = None,
) -> Account | None:
    """An administrator creates a staff or integrator account; None when this request
    created it already (``already_created``: answer as the first time, change nothing).

    ``login`` is the login as typed, ``login_field``/``login_value`` what it names (an e-mail
    or a login name). The password must pass the policy and the login must be free
    (``login_taken``). An integrator is a service account named by the login (its password is
    the client secret) and bound to the operator it acts for (``operator_id``, required); any
    other role is a staff member who logs in with the e-mail or the login name and must change
    the initial password, and names no operator (an operator on a staff account would read as
    a binding nobody checks).
    """
    if already_created:
        return None
    if (role is AccessRole.INTEGRATOR) != (operator_id is not None):
        raise AuthRejected(Reason.INVALID_ROLE, "integrators, and only they, name an operator")
    require_acceptable_password(password)
    if login_taken:
        raise AuthRejected(Reason.IDEMPOTENCY_KEY_REUSED, "login taken")
    if role is AccessRole.INTEGRATOR:
        return Account.create_integrator(account_id=account_id, name=login,
                                         client_secret_hash=password_hash, scopes=(),
                                         operator_id=operator_id or "", now=now)
    return Account.create_staff(
        account_id=account_id, role=role, school_id=school_id,
        initial_password_hash=password_hash, now=now,
        **{"email" if login_field == "email" else "username": login_value})


def _session_source(session: Session) -> str:
    """The throttle source of a password asked again inside a live session."""
    return f"session:{session.session_id}"


def _keyed_digest(pepper: bytes, secret: str) -> str:
    """Codes enter idempotency fingerprints only through the pepper, so a stolen database does
    not give a fast offline test for them. Passwords never enter a fingerprint at all: a retry
    with the same key and another password replays the first result."""
    return hmac.new(pepper, b"idempotency\x1f" + secret.encode(), hashlib.sha256).hexdigest()
