"""One outgoing message and its delivery state machine.

    pending --send ok--> sent
    pending --send failed--> failed --(backoff elapses)--> retried ... --> sent | dead
    held (waiting for the daily digest) --digest built--> digested

A message is identified by its dedupe key ``<event id>:<guardian id>:<channel>``: the store puts a
unique index on it, so an event redelivered any number of times yields one message per guardian
and channel, and :func:`admit` tells a harmless duplicate from a conflicting reuse of the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from .clock import from_doc_datetime, opt_from_doc_datetime, require_aware
from .errors import NotifyError, NotifyRejection
from .kinds import Channel, Locale, NotificationKind

REDACTED = "[redacted]"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    SENT = "sent"
    DEAD = "dead"
    HELD = "held"
    DIGESTED = "digested"


TERMINAL_STATUSES = frozenset({DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.DIGESTED})


def dedupe_key(event_id: str, guardian_id: str, channel: Channel) -> str:
    """Deterministic identity of a message: the same event, guardian and channel always map to
    the same key, whenever and however often the event is delivered."""
    return f"{event_id}:{guardian_id}:{channel.value}"


_ONE_SECOND = timedelta(seconds=1)
_FIVE_MINUTES = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: 1 s, 2 s, 4 s, 8 s ... capped; dead after ``max_attempts``."""

    max_attempts: int = 5
    base: timedelta = _ONE_SECOND
    cap: timedelta = _FIVE_MINUTES

    def delay_after(self, attempt: int) -> timedelta:
        """Wait before the attempt following failed attempt number ``attempt`` (1-based)."""
        delay: timedelta = min(self.base * (2 ** max(0, attempt - 1)), self.cap)
        return delay


DEFAULT_RETRY = RetryPolicy()


# -- domain events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageQueued:
    dedupe_key: str
    event_id: str
    guardian_id: str | None
    kind: NotificationKind
    channel: Channel
    due_at: datetime | None  # None when held for the digest
    held_for_digest: bool


@dataclass(frozen=True, slots=True)
class MessageSent:
    dedupe_key: str
    guardian_id: str | None
    kind: NotificationKind
    channel: Channel
    sent_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class MessageDeliveryFailed:
    dedupe_key: str
    channel: Channel
    attempt: int
    error: str
    retry_at: datetime


@dataclass(frozen=True, slots=True)
class MessageDead:
    dedupe_key: str
    guardian_id: str | None
    kind: NotificationKind
    channel: Channel
    attempts: int
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MessageDigested:
    dedupe_key: str
    digest_key: str
    at: datetime


DeliveryEvent = MessageSent | MessageDeliveryFailed | MessageDead


def _mask_address(channel: Channel, address: str) -> str:
    if channel is Channel.SMS and len(address) > 6:
        return address[:2] + "*" * (len(address) - 6) + address[-4:]
    if channel is Channel.EMAIL and "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address


@dataclass(slots=True)
class Message:
    """A message to one recipient on one channel, with its delivery state.

    ``address`` is the guardian account id for push (the push adapter resolves device tokens),
    the E.164 phone for SMS and the e-mail address for e-mail. ``secret`` marks a body that holds
    a one-time code: it never shows in ``repr``, :meth:`redacted` or :meth:`to_log`, and it is
    erased from the document once the message is terminal, so the code does not outlive its use.
    """

    dedupe_key: str
    event_id: str
    kind: NotificationKind
    channel: Channel
    guardian_id: str | None
    contract: str | None
    address: str = field(repr=False)
    locale: Locale
    subject: str
    body: str = field(repr=False)
    short: str
    secret: bool
    occurred_at: datetime
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    not_before: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    provider_message_id: str | None = None
    digest_day: date | None = None
    digest_key: str | None = None
    fallback_of: str | None = None
    version: int = 0

    def __repr__(self) -> str:
        return (
            f"Message(dedupe_key={self.dedupe_key!r}, kind={self.kind.value!r}, "
            f"channel={self.channel.value!r}, status={self.status.value!r}, "
            f"attempts={self.attempts}, address={_mask_address(self.channel, self.address)!r}, "
            f"body={REDACTED if self.secret else repr(self.body)}, version={self.version})"
        )

    __str__ = __repr__

    # -- queries ------------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def due_at(self) -> datetime | None:
        """When the next send attempt may happen; None when terminal or held for the digest."""
        if self.status is DeliveryStatus.PENDING:
            return self.not_before or self.created_at
        if self.status is DeliveryStatus.FAILED:
            return self.next_attempt_at
        return None

    def is_due(self, now: datetime) -> bool:
        due = self.due_at
        return due is not None and due <= require_aware(now)

    def fingerprint(self) -> tuple[str, str, str, str | None, str | None]:
        """What must match for two messages with one dedupe key to be the same message."""
        return (self.event_id, self.kind.value, self.channel.value, self.guardian_id,
                self.contract)

    def redacted(self) -> Message:
        """A copy safe to log or show to staff: masked address, secret body removed."""
        return replace(
            self,
            address=_mask_address(self.channel, self.address),
            body=REDACTED if self.secret else self.body,
        )

    def to_log(self) -> dict[str, Any]:
        """Structured-log fields: identifiers and state only, never the body or the address."""
        return {
            "dedupe_key": self.dedupe_key,
            "event_id": self.event_id,
            "kind": self.kind.value,
            "channel": self.channel.value,
            "guardian_id": self.guardian_id,
            "status": self.status.value,
            "attempts": self.attempts,
        }

    # -- transitions --------------------------------------------------------------------------

    def _require_sendable(self) -> None:
        if self.status is DeliveryStatus.HELD:
            raise NotifyError(NotifyRejection.NOT_DUE, "held for the daily digest")
        if self.is_terminal:
            raise NotifyError(NotifyRejection.ALREADY_TERMINAL, self.status.value)

    def _erase_secret(self) -> None:
        if self.secret:
            self.body = ""

    def mark_sent(
        self, now: datetime, provider_message_id: str | None = None
    ) -> MessageSent | None:
        """Record a successful hand-over to the provider. Repeating it is a no-op (None)."""
        now = require_aware(now)
        if self.status is DeliveryStatus.SENT:
            return None
        self._require_sendable()
        self.attempts += 1
        self.status = DeliveryStatus.SENT
        self.sent_at = now
        self.next_attempt_at = None
        self.provider_message_id = provider_message_id
        self._erase_secret()
        self.version += 1
        return MessageSent(self.dedupe_key, self.guardian_id, self.kind, self.channel, now,
                           self.attempts)

    def mark_failed(
        self,
        now: datetime,
        error: str,
        *,
        permanent: bool = False,
        attempt: int | None = None,
        policy: RetryPolicy = DEFAULT_RETRY,
    ) -> MessageDeliveryFailed | MessageDead | None:
        """Record a failed attempt: schedule a retry with backoff, or go dead.

        ``permanent`` (e.g. an unregistered push token, an invalid number) goes dead at once.
        ``attempt`` is the 1-based number of the attempt being reported; a report for an attempt
        already recorded is a no-op (None), so a redelivered delivery result is harmless.
        """
        now = require_aware(now)
        if attempt is not None and attempt <= self.attempts:
            return None
        self._require_sendable()
        self.attempts += 1
        self.last_error = error
        self.version += 1
        if permanent or self.attempts >= policy.max_attempts:
            self.status = DeliveryStatus.DEAD
            self.next_attempt_at = None
            self._erase_secret()
            return MessageDead(self.dedupe_key, self.guardian_id, self.kind, self.channel,
                               self.attempts, error, now)
        self.status = DeliveryStatus.FAILED
        self.next_attempt_at = now + policy.delay_after(self.attempts)
        return MessageDeliveryFailed(self.dedupe_key, self.channel, self.attempts, error,
                                     self.next_attempt_at)

    def mark_digested(self, digest_key: str, now: datetime) -> MessageDigested | None:
        """The held message was folded into the digest ``digest_key``; repeating is a no-op."""
        now = require_aware(now)
        if self.status is DeliveryStatus.DIGESTED:
            if self.digest_key == digest_key:
                return None
            raise NotifyError(NotifyRejection.ALREADY_TERMINAL, f"in digest {self.digest_key}")
        if self.status is not DeliveryStatus.HELD:
            raise NotifyError(NotifyRejection.NOT_HELD_FOR_DIGEST, self.status.value)
        self.status = DeliveryStatus.DIGESTED
        self.digest_key = digest_key
        self.version += 1
        return MessageDigested(self.dedupe_key, digest_key, now)

    def queued_event(self) -> MessageQueued:
        return MessageQueued(self.dedupe_key, self.event_id, self.guardian_id, self.kind,
                             self.channel, self.due_at, self.status is DeliveryStatus.HELD)

    # -- persistence --------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "dedupe_key": self.dedupe_key,
            "event_id": self.event_id,
            "kind": self.kind.value,
            "channel": self.channel.value,
            "guardian_id": self.guardian_id,
            "contract": self.contract,
            "address": self.address,
            "locale": self.locale.value,
            "subject": self.subject,
            "body": self.body,
            "short": self.short,
            "secret": self.secret,
            "occurred_at": self.occurred_at,
            "created_at": self.created_at,
            "status": self.status.value,
            "not_before": self.not_before,
            "next_attempt_at": self.next_attempt_at,
            "due_at": self.due_at,  # denormalised for the sender's "what is due" index
            "attempts": self.attempts,
            "last_error": self.last_error,
            "sent_at": self.sent_at,
            "provider_message_id": self.provider_message_id,
            "digest_day": None if self.digest_day is None else self.digest_day.isoformat(),
            "digest_key": self.digest_key,
            "fallback_of": self.fallback_of,
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Message:
        return cls(
            dedupe_key=doc["dedupe_key"],
            event_id=doc["event_id"],
            kind=NotificationKind(doc["kind"]),
            channel=Channel(doc["channel"]),
            guardian_id=doc["guardian_id"],
            contract=doc["contract"],
            address=doc["address"],
            locale=Locale(doc["locale"]),
            subject=doc["subject"],
            body=doc["body"],
            short=doc["short"],
            secret=doc["secret"],
            occurred_at=from_doc_datetime(doc["occurred_at"]),
            created_at=from_doc_datetime(doc["created_at"]),
            status=DeliveryStatus(doc["status"]),
            not_before=opt_from_doc_datetime(doc["not_before"]),
            next_attempt_at=opt_from_doc_datetime(doc["next_attempt_at"]),
            attempts=doc["attempts"],
            last_error=doc["last_error"],
            sent_at=opt_from_doc_datetime(doc["sent_at"]),
            provider_message_id=doc["provider_message_id"],
            digest_day=None if doc["digest_day"] is None
            else date.fromisoformat(doc["digest_day"]),
            digest_key=doc["digest_key"],
            fallback_of=doc["fallback_of"],
            version=doc["version"],
        )


def admit(existing: Message | None, candidate: Message) -> Message:
    """Decide what to store for ``candidate`` given what the store already holds for its key.

    Nothing stored: the candidate. The same message again (redelivery; the text may differ if a
    template or preference changed meanwhile): the stored one, unchanged, so delivery state is
    never reset. A different message under the same key: :class:`NotifyError`
    ``dedupe_key_conflict``, because an event id was reused for something else.
    """
    if existing is None:
        return candidate
    if existing.dedupe_key != candidate.dedupe_key:
        raise NotifyError(NotifyRejection.DEDUPE_KEY_CONFLICT, "keys differ")
    if existing.fingerprint() != candidate.fingerprint():
        raise NotifyError(NotifyRejection.DEDUPE_KEY_CONFLICT, existing.dedupe_key)
    return existing
