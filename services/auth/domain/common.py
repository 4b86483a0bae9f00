"""Shared vocabulary of the auth domain: reason codes, rejections, clocks, idempotency, throttles.

Conventions used by every aggregate in this package:

* A method that rejects a request *without changing state* raises :class:`AuthRejected`.
* A method whose rejection *does* change state (a failed attempt is counted, a token family is
  revoked) returns a result whose ``rejection`` is set, so the caller persists the aggregate
  before replying; such methods never raise for that case.
* Every aggregate collects its domain events in ``pending_events`` until the store drains them
  with ``pull_events()`` into the outbox of the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Machine-readable rejection codes; stable strings, safe to put on the wire."""

    # input shape
    INVALID_PHONE = "invalid_phone"
    INVALID_CONTRACT_NUMBER = "invalid_contract_number"
    INVALID_EMAIL = "invalid_email"
    INVALID_LOCALE = "invalid_locale"
    CONSENT_REQUIRED = "consent_required"
    # password policy
    PASSWORD_TOO_SHORT = "password_too_short"
    PASSWORD_TOO_LONG = "password_too_long"
    PASSWORD_COMMON = "password_common"
    PASSWORD_REPETITIVE = "password_repetitive"
    PASSWORD_CONTAINS_PHONE = "password_contains_phone"
    PASSWORD_CONTAINS_CONTRACT = "password_contains_contract"
    PASSWORD_CONTAINS_BIRTH_DATE = "password_contains_birth_date"
    PASSWORD_UNCHANGED = "password_unchanged"
    CODE_WORD_TOO_SHORT = "code_word_too_short"
    REAUTHENTICATION_REQUIRED = "reauthentication_required"
    PHONE_TAKEN = "phone_taken"
    EMAIL_TAKEN = "email_taken"
    # one-time codes
    CODE_INVALID = "code_invalid"
    CODE_EXPIRED = "code_expired"
    CODE_USED = "code_used"
    CODE_ATTEMPTS_EXHAUSTED = "code_attempts_exhausted"
    CODE_RATE_LIMITED = "code_rate_limited"
    # login and sessions
    INVALID_CREDENTIALS = "invalid_credentials"
    LOGIN_DELAYED = "login_delayed"
    LOGIN_RATE_LIMITED = "login_rate_limited"
    LOGIN_LOCKED = "login_locked"
    PHONE_COUNTRY_NOT_SERVED = "phone_country_not_served"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_IDLE_EXPIRED = "session_idle_expired"
    SESSION_LIFETIME_EXPIRED = "session_lifetime_expired"
    SESSION_REVOKED = "session_revoked"
    REFRESH_TOKEN_INVALID = "refresh_token_invalid"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    SECOND_FACTOR_INVALID = "second_factor_invalid"
    SECOND_FACTOR_NOT_ENABLED = "second_factor_not_enabled"
    SECOND_FACTOR_ALREADY_ENABLED = "second_factor_already_enabled"
    PASSWORD_CHANGE_REQUIRED = "password_change_required"
    RESET_REASON_REQUIRED = "reset_reason_required"
    DEVICE_NOT_FOUND = "device_not_found"
    DEVICE_NAME_INVALID = "device_name_invalid"
    # account state
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    ACCOUNT_CLOSED = "account_closed"
    ACCOUNT_NOT_FOUND = "account_not_found"
    WRONG_ACCOUNT_KIND = "wrong_account_kind"
    INVALID_ROLE = "invalid_role"
    # guardians
    CHILD_PROOF_INVALID = "child_proof_invalid"
    CHILD_PROOF_RATE_LIMITED = "child_proof_rate_limited"
    GUARDIAN_INVITE_REQUIRED = "guardian_invite_required"
    ALREADY_GUARDIAN = "already_guardian"
    NOT_A_GUARDIAN = "not_a_guardian"
    NOT_PERMITTED = "not_permitted"
    INVITATION_INVALID = "invitation_invalid"
    INVITATION_EXPIRED = "invitation_expired"
    CANNOT_REMOVE_PRIMARY = "cannot_remove_primary"
    SAME_CONTRACT = "same_contract"
    CONTRACT_IN_USE = "contract_in_use"
    # idempotency
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"


class AuthRejected(Exception):
    """An expected refusal. ``retry_after`` is set when waiting is the remedy."""

    def __init__(
        self,
        reason: Reason,
        detail: str = "",
        *,
        retry_after: timedelta | None = None,
        reasons: tuple[Reason, ...] = (),
    ) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after
        self.reasons = reasons or (reason,)


SUPPORT_REASON_MIN_LENGTH = 10


def require_support_reason(reason: str) -> str:
    """The reason support records for an action on someone else's account (how the identity
    was checked): whitespace folded, at least 10 characters, else ``RESET_REASON_REQUIRED``."""
    why = " ".join(reason.split())
    if len(why) < SUPPORT_REASON_MIN_LENGTH:
        raise AuthRejected(Reason.RESET_REASON_REQUIRED,
                           f"give at least {SUPPORT_REASON_MIN_LENGTH} characters")
    return why


def require_aware(now: datetime) -> datetime:
    """Reject naive datetimes: every clock value in this domain is a UTC instant."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return now.astimezone(UTC)


def dt_from_doc(value: Any) -> datetime:
    """Read a stored datetime; PyMongo without ``tz_aware`` returns naive UTC values."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_dt_from_doc(value: Any) -> datetime | None:
    return None if value is None else dt_from_doc(value)


def date_to_doc(value: date) -> str:
    return value.isoformat()


def date_from_doc(value: Any) -> date:
    return date.fromisoformat(str(value))


def fingerprint(**params: object) -> str:
    """Stable digest of an operation's parameters (secrets must be hashed by the caller first)."""
    canonical = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class IdempotencyLog:
    """Results of recent keyed operations on one aggregate.

    A replay (same key, same parameter fingerprint) returns the stored result document and the
    caller must not apply anything; the same key with another fingerprint is
    ``IDEMPOTENCY_KEY_REUSED``. Only the last ``capacity`` keys are kept: the inbox of the
    handler layer deduplicates redelivered messages for longer, this log covers client retries.
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    capacity: int = 64

    def replay(self, key: str | None, fp: str) -> dict[str, Any] | None:
        if key is None:
            return None
        for entry in self.entries:
            if entry["key"] == key:
                if entry["fingerprint"] != fp:
                    raise AuthRejected(Reason.IDEMPOTENCY_KEY_REUSED, key)
                result: dict[str, Any] = entry["result"]
                return result
        return None

    def remember(self, key: str | None, fp: str, result: dict[str, Any]) -> None:
        if key is None:
            return
        self.entries.append({"key": key, "fingerprint": fp, "result": result})
        del self.entries[: max(0, len(self.entries) - self.capacity)]

    def to_doc(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self.entries]

    @classmethod
    def from_doc(cls, doc: list[dict[str, Any]] | None) -> IdempotencyLog:
        return cls(entries=[dict(e) for e in (doc or [])])


@dataclass(frozen=True)
class Gate:
    """Whether an attempt may be processed now; ``reason``/``retry_after`` explain a refusal."""

    allowed: bool
    reason: Reason | None = None
    retry_after: timedelta | None = None


@dataclass
class FailureWindow:
    """Failed attempts in a rolling window, with an increasing delay and a hard cap.

    Up to ``free_failures`` failures cost nothing; after that the next attempt must wait
    ``2 ** (n - free_failures)`` seconds after the latest failure, capped at ``max_delay``.
    With ``limit`` failures inside ``window`` further attempts are refused unprocessed until the
    oldest failure leaves the window. Nothing is ever locked for good: time alone reopens the
    gate, and the owner's recovery path (a code-verified reset, a success) calls :meth:`clear`.
    """

    failures: list[datetime] = field(default_factory=list)
    limit: int = 100
    window: timedelta = timedelta(hours=1)
    free_failures: int = 5
    max_delay: timedelta = timedelta(seconds=30)
    limit_reason: Reason = Reason.LOGIN_RATE_LIMITED
    delay_reason: Reason = Reason.LOGIN_DELAYED

    def _prune(self, now: datetime) -> None:
        horizon = now - self.window
        self.failures = [t for t in self.failures if t > horizon]

    def count(self, now: datetime) -> int:
        horizon = require_aware(now) - self.window
        return sum(1 for t in self.failures if t > horizon)

    def delay_after(self, failures: int) -> timedelta:
        if failures < self.free_failures:
            return timedelta(0)
        exponent = min(failures - self.free_failures, 30)  # 2**30 s is past any sane cap
        return min(timedelta(seconds=2**exponent), self.max_delay)

    def gate(self, now: datetime) -> Gate:
        now = require_aware(now)
        recent = sorted(t for t in self.failures if t > now - self.window)
        if len(recent) >= self.limit:
            reopen = recent[len(recent) - self.limit] + self.window
            return Gate(False, self.limit_reason, reopen - now)
        if recent:
            earliest = recent[-1] + self.delay_after(len(recent))
            if now < earliest:
                return Gate(False, self.delay_reason, earliest - now)
        return Gate(True)

    def record_failure(self, now: datetime) -> None:
        now = require_aware(now)
        self._prune(now)
        self.failures.append(now)
        del self.failures[: max(0, len(self.failures) - self.limit)]

    def clear(self) -> None:
        self.failures = []

    def to_doc(self) -> list[datetime]:
        return list(self.failures)

    def load(self, doc: list[Any] | None) -> FailureWindow:
        self.failures = [dt_from_doc(t) for t in (doc or [])]
        return self


SOURCE_FAILURE_LIMIT = 20
"""Failed logins processed per hour from one source (device + IP) against one identifier."""
ACCOUNT_FAILURE_LIMIT = 100
"""Failed logins processed per hour against one identifier from all sources together
(ASVS 2.2.1: at most 100); sources the account logged in from before are exempt."""
SOURCES_KEPT = 64
LIFETIME_FAILURE_LIMIT = 10
"""Wrong tries, in total, against a password anyone who knows the child's birth date can type
(a contract's initial password, about 5,000 plausible values): then only support unlocks."""


def source_throttle() -> FailureWindow:
    """One source's window: 5 failures free, then 1, 2, 4 .. 30 s apart, 20 an hour."""
    return FailureWindow(limit=SOURCE_FAILURE_LIMIT)


def account_ceiling() -> FailureWindow:
    """The identifier's window over every source: no delays (a delay shared by all sources is
    what let one attacker keep the owner out), 100 failures an hour, then refused."""
    return FailureWindow(limit=ACCOUNT_FAILURE_LIMIT, free_failures=ACCOUNT_FAILURE_LIMIT)


def login_throttle() -> FailureWindow:
    """The identifier-wide ceiling (kept under this name for the stored ``password_failures``)."""
    return account_ceiling()


@dataclass
class LoginThrottle:
    """Password guessing against one login identifier, counted where it comes from.

    A *source* is a keyed hash of the device name and the client address of the attempt
    (``security.source_key``), or a live session for the commands that ask for the password
    again. Each source has its own window (:func:`source_throttle`: growing delays, 20 an
    hour), so an attacker's failures delay the attacker only. Every failure also counts in
    the identifier-wide ceiling (:func:`account_ceiling`, 100 an hour), which stops guessing
    spread over many addresses; ``trusted`` attempts (a login presenting a trusted device's
    token, ``domain.devices``, or a live session) pass the ceiling, so the owner's own phone
    keeps working while strangers are refused; a device name and address prove nothing and
    exempt nothing. A success clears its source's window only: the ceiling is shared with
    whoever else is guessing. ``lifetime_failures`` counts every failure for good; it closes
    the identifier after ``LIFETIME_FAILURE_LIMIT`` when the caller says the password is
    guessable (``lifetime_limited``), until support unlocks
    (:meth:`clear`).
    """

    ceiling: FailureWindow = field(default_factory=account_ceiling)
    sources: dict[str, FailureWindow] = field(default_factory=dict)
    lifetime_failures: int = 0

    def gate(self, source: str, now: datetime, *, trusted: bool = False,
             lifetime_limited: bool = False) -> Gate:
        if lifetime_limited and self.lifetime_failures >= LIFETIME_FAILURE_LIMIT:
            return Gate(False, Reason.LOGIN_LOCKED)
        own = self.sources.get(source)
        if own is not None:
            gate = own.gate(now)
            if not gate.allowed:
                return gate
        if trusted:
            return Gate(True)
        return self.ceiling.gate(now)

    def record_failure(self, source: str, now: datetime) -> None:
        now = require_aware(now)
        self.sources.setdefault(source, source_throttle()).record_failure(now)
        self.ceiling.record_failure(now)
        self.lifetime_failures += 1
        self._forget_quiet_sources(now)

    def succeeded(self, source: str) -> None:
        """The owner got in from ``source``: its own window is cleared (the device becomes
        known through its device token, ``domain.devices``, not here)."""
        self.sources.pop(source, None)

    def failures(self, now: datetime) -> int:
        """Failures in the last hour from every source (the ceiling's count)."""
        return self.ceiling.count(now)

    def clear(self) -> None:
        """The owner proved themselves another way (a reset by SMS code) or support unlocked
        the account: every window and the lifetime count start again; known sources stay."""
        self.ceiling.clear()
        self.sources.clear()
        self.lifetime_failures = 0

    def _forget_quiet_sources(self, now: datetime) -> None:
        """At most ``SOURCES_KEPT`` windows: the quiet ones go first, then the oldest (an
        attacker spread over more addresses than that still meets the ceiling)."""
        for key in [k for k, w in self.sources.items() if w.count(now) == 0]:
            del self.sources[key]
        if len(self.sources) > SOURCES_KEPT:
            by_age = sorted(self.sources, key=lambda k: max(self.sources[k].failures))
            for key in by_age[: len(self.sources) - SOURCES_KEPT]:
                del self.sources[key]

    def to_doc(self) -> dict[str, Any]:
        return {
            "password_failures": self.ceiling.to_doc(),
            "source_failures": [{"source": k, "failures": w.to_doc()}
                                for k, w in self.sources.items()],
            "lifetime_failures": self.lifetime_failures,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> LoginThrottle:
        doc = doc or {}
        return cls(
            ceiling=account_ceiling().load(doc.get("password_failures", doc.get("failures"))),
            sources={str(s["source"]): source_throttle().load(s["failures"])
                     for s in doc.get("source_failures", [])},
            lifetime_failures=int(doc.get("lifetime_failures", 0)),
        )


def code_throttle() -> FailureWindow:
    """Per-account throttle of authenticator (TOTP) codes outside login. One-time SMS codes
    are limited per code instead (5 attempts, a new code starts again: ``codes``), so that
    guesses never hold up the owner's correct code."""
    return FailureWindow(
        free_failures=100,
        limit_reason=Reason.CODE_RATE_LIMITED,
        delay_reason=Reason.CODE_RATE_LIMITED,
    )


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Base of every domain event: something that happened, at a UTC instant."""

    occurred_at: datetime

    @property
    def name(self) -> str:
        return type(self).__name__
