"""Sessions: one refresh-token family each, 20-minute idle timeout, 12-hour absolute lifetime,
rotation on every refresh, and reuse detection that revokes the whole family.

Reuse follows the OAuth 2.0 Security BCP (RFC 9700, 4.14.2): a rotated-away refresh token
that comes back means two parties hold the family, so the whole family is revoked. The one
exception is a short grace window after a rotation (``REFRESH_REUSE_GRACE``, configurable):
a client whose reply was lost retries with the token it still has, and is answered with a new
token rotated from the current one instead of being logged out. See :meth:`Session.refresh`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .common import (
    AuthRejected,
    DomainEvent,
    IdempotencyLog,
    Reason,
    dt_from_doc,
    fingerprint,
    opt_dt_from_doc,
    require_aware,
)
from .devices import TrustedDevices
from .events import RefreshTokenReuseDetected, SessionRefreshed, SessionRevoked, SessionStarted

IDLE_TIMEOUT = timedelta(minutes=20)
ABSOLUTE_LIFETIME = timedelta(hours=12)
REFRESH_REUSE_GRACE = timedelta(seconds=30)
REFRESH_RETRIES_IN_GRACE = 5
"""Answered retries per rotation; a client retries a lost reply a few times, not dozens."""
_MAX_ROTATED = 1_000  # 12 h of refreshes every minute fits; older hashes are never presented


@dataclass(frozen=True)
class RefreshResult:
    """``rejection`` is only ever ``REFRESH_TOKEN_REUSED`` here (other refusals raise), and
    then the family is already revoked and must be persisted. ``retried`` marks a rotation
    that answered a retry inside the grace window; ``replayed`` a stored refusal returned
    again for the same idempotency key."""

    session_id: str
    generation: int
    refresh_token_hash: str
    rejection: Reason | None = None
    replayed: bool = False
    retried: bool = False

    @property
    def ok(self) -> bool:
        return self.rejection is None

    def require_ok(self) -> None:
        """Raise the reuse refusal (after the caller persisted the revoked family)."""
        if self.rejection is not None:
            raise AuthRejected(self.rejection)

    def to_doc(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "generation": self.generation,
            "refresh_token_hash": self.refresh_token_hash,
            "rejection": self.rejection.value if self.rejection else None,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any], *, replayed: bool) -> RefreshResult:
        return cls(
            session_id=str(doc["session_id"]),
            generation=int(doc["generation"]),
            refresh_token_hash=str(doc["refresh_token_hash"]),
            rejection=Reason(doc["rejection"]) if doc.get("rejection") else None,
            replayed=replayed,
        )


@dataclass(frozen=True)
class SessionView:
    """What "list my active sessions" shows the owner: ``device_id`` is the trusted device the
    session was logged in from and ``device_name`` that device's name in the owner's list
    (None: no device recorded, or the device is no longer trusted)."""

    session_id: str
    device: str
    ip_hash: str
    created_at: datetime
    last_used_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    device_id: str | None = None
    device_name: str | None = None


@dataclass
class Session:
    """A login session; ``session_id`` doubles as the refresh-token family id.

    ``epoch`` is the account's session epoch at creation: raising the account's epoch (password
    change or reset, log out everywhere, disable, close) ends every older session at once
    without touching each session document, which also covers a session created concurrently.
    """

    session_id: str
    account_id: str
    epoch: int
    created_at: datetime
    last_used_at: datetime
    absolute_expires_at: datetime
    refresh_token_hash: str
    device: str
    ip_hash: str
    generation: int = 0
    rotated_token_hashes: list[str] = field(default_factory=list)
    rotated_at: datetime | None = None
    grace_token_hashes: list[str] = field(default_factory=list)
    second_factor_pending: bool = False
    password_change_only: bool = False
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    # The trusted device the login came from (None: no device token, or a session stored
    # before sessions recorded it); revoking that device ends the session.
    device_id: str | None = None
    idempotency: IdempotencyLog = field(default_factory=IdempotencyLog)
    version: int = 0
    pending_events: list[DomainEvent] = field(default_factory=list, repr=False)

    @classmethod
    def start(
        cls,
        *,
        session_id: str,
        account_id: str,
        epoch: int,
        refresh_token_hash: str,
        device: str,
        ip_hash: str,
        now: datetime,
        second_factor_pending: bool = False,
        password_change_only: bool = False,
        device_id: str | None = None,
    ) -> Session:
        now = require_aware(now)
        session = cls(
            session_id=session_id,
            account_id=account_id,
            epoch=epoch,
            created_at=now,
            last_used_at=now,
            absolute_expires_at=now + ABSOLUTE_LIFETIME,
            refresh_token_hash=refresh_token_hash,
            device=device[:256],
            ip_hash=ip_hash,
            second_factor_pending=second_factor_pending,
            password_change_only=password_change_only,
            device_id=device_id,
        )
        session.pending_events.append(
            SessionStarted(occurred_at=now, account_id=account_id, session_id=session_id,
                           absolute_expires_at=session.absolute_expires_at)
        )
        return session

    # --- state ------------------------------------------------------------------------------

    @property
    def idle_expires_at(self) -> datetime:
        return min(self.last_used_at + IDLE_TIMEOUT, self.absolute_expires_at)

    def inactive_reason(self, now: datetime, account_epoch: int) -> Reason | None:
        """Why the session can no longer be used, or None while it is active. Idle expiry is
        exclusive: used 19:59 after the last use it is still active, at 20:00 it is over."""
        now = require_aware(now)
        if self.revoked_at is not None or self.epoch < account_epoch:
            return Reason.SESSION_REVOKED
        if now >= self.absolute_expires_at:
            return Reason.SESSION_LIFETIME_EXPIRED
        if now >= self.last_used_at + IDLE_TIMEOUT:
            return Reason.SESSION_IDLE_EXPIRED
        return None

    def is_active(self, now: datetime, account_epoch: int) -> bool:
        return self.inactive_reason(now, account_epoch) is None

    def require_active(self, now: datetime, account_epoch: int) -> None:
        reason = self.inactive_reason(now, account_epoch)
        if reason is not None:
            raise AuthRejected(reason)

    def require_full_access(self, now: datetime, account_epoch: int) -> None:
        """Active, second factor done, and no forced password change pending."""
        self.require_active(now, account_epoch)
        if self.second_factor_pending:
            raise AuthRejected(Reason.SECOND_FACTOR_REQUIRED)
        if self.password_change_only:
            raise AuthRejected(Reason.PASSWORD_CHANGE_REQUIRED)

    def touch(self, now: datetime, account_epoch: int) -> None:
        """Record activity (extends the idle deadline, never the absolute one)."""
        self.require_active(now, account_epoch)
        self.last_used_at = max(self.last_used_at, require_aware(now))

    # --- operations -------------------------------------------------------------------------

    def refresh(
        self,
        *,
        presented_token_hash: str,
        new_token_hash: str,
        now: datetime,
        account_epoch: int,
        idempotency_key: str | None = None,
        reuse_grace: timedelta = REFRESH_REUSE_GRACE,
    ) -> RefreshResult:
        """Rotate the refresh token: ``new_token_hash`` becomes the current one.

        * The current token: an ordinary rotation. It starts a grace window of
          ``reuse_grace`` for the token it retired.
        * A rotated-away token inside that window, i.e. the token the last ordinary rotation
          retired or one retired by an answered retry since (a client retrying after a lost
          reply, whatever its idempotency key): answered as a retry, a rotation from the
          *current* token, so the token in the lost reply stops working and only the newest
          answer does. At most ``REFRESH_RETRIES_IN_GRACE`` retries are answered per window.
        * Any other rotated-away token, or one past the window: reuse, i.e. someone else holds
          the family. The whole family is revoked and a result with ``REFRESH_TOKEN_REUSED``
          is returned (persist it); the same key asking again gets that result again.
        * Revoked, expired, or an unknown token: :class:`AuthRejected`, nothing changes.

        So after a window closes, whoever still holds a non-current token of the family
        revokes it on use: a thief and the owner cannot both keep a session.
        """
        now = require_aware(now)
        fp = fingerprint(op="refresh", presented=presented_token_hash)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None and stored.get("rejection"):
            return RefreshResult.from_doc(stored, replayed=True)
        if self.revoked_at is not None or self.epoch < account_epoch:
            raise AuthRejected(Reason.SESSION_REVOKED)
        if presented_token_hash in self.rotated_token_hashes:
            if self._retry_in_grace(presented_token_hash, now, reuse_grace):
                self.require_active(now, account_epoch)
                return self._rotate(new_token_hash, now, retry=True)
            generation = self.rotated_token_hashes.index(presented_token_hash)
            self._revoke(now, "refresh_token_reused")
            self.pending_events.append(
                RefreshTokenReuseDetected(occurred_at=now, account_id=self.account_id,
                                          session_id=self.session_id,
                                          presented_generation=generation)
            )
            result = RefreshResult(self.session_id, self.generation, self.refresh_token_hash,
                                   rejection=Reason.REFRESH_TOKEN_REUSED)
            self.idempotency.remember(idempotency_key, fp, result.to_doc())
            return result
        if presented_token_hash != self.refresh_token_hash:
            raise AuthRejected(Reason.REFRESH_TOKEN_INVALID)
        self.require_active(now, account_epoch)
        result = self._rotate(new_token_hash, now, retry=False)
        if stored is None:
            self.idempotency.remember(idempotency_key, fp, result.to_doc())
        return result

    def _retry_in_grace(self, presented_token_hash: str, now: datetime,
                        grace: timedelta) -> bool:
        return (self.rotated_at is not None and now < self.rotated_at + grace
                and presented_token_hash in self.grace_token_hashes
                and len(self.grace_token_hashes) <= REFRESH_RETRIES_IN_GRACE)

    def _rotate(self, new_token_hash: str, now: datetime, *, retry: bool) -> RefreshResult:
        if new_token_hash == self.refresh_token_hash or new_token_hash in self.rotated_token_hashes:
            raise ValueError("a rotated refresh token must be new")
        retired = self.refresh_token_hash
        self.rotated_token_hashes.append(retired)
        del self.rotated_token_hashes[: max(0, len(self.rotated_token_hashes) - _MAX_ROTATED)]
        if retry:
            self.grace_token_hashes.append(retired)  # the window keeps its start
        else:
            self.rotated_at = now
            self.grace_token_hashes = [retired]
        self.refresh_token_hash = new_token_hash
        self.generation += 1
        self.last_used_at = now
        self.pending_events.append(
            SessionRefreshed(occurred_at=now, account_id=self.account_id,
                             session_id=self.session_id, generation=self.generation,
                             retry=retry)
        )
        return RefreshResult(self.session_id, self.generation, new_token_hash, retried=retry)

    def revoke(self, now: datetime, reason: str = "logout") -> bool:
        """End this session (logout). Revoking a revoked session is a no-op returning False."""
        return self._revoke(require_aware(now), reason)

    def expire(self, now: datetime) -> bool:
        """End a session whose refresh lifetime ran out (idle or absolute: it can never be
        refreshed again), as of that moment, so that whoever keeps state about it hears so
        (``SessionRevoked`` reason ``expired`` -> ``SessionEnded``: notify drops its push
        tokens). False, and nothing changes, while it is alive or once it ended."""
        now = require_aware(now)
        if self.revoked_at is not None or now < self.idle_expires_at:
            return False
        return self._revoke(self.idle_expires_at, "expired")

    def _revoke(self, now: datetime, reason: str) -> bool:
        if self.revoked_at is not None:
            return False
        self.revoked_at = now
        self.revoke_reason = reason
        self.pending_events.append(
            SessionRevoked(occurred_at=now, account_id=self.account_id,
                           session_id=self.session_id, reason=reason)
        )
        return True

    def view(self, device_name: str | None = None) -> SessionView:
        return SessionView(
            session_id=self.session_id,
            device=self.device,
            ip_hash=self.ip_hash,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            idle_expires_at=self.idle_expires_at,
            absolute_expires_at=self.absolute_expires_at,
            device_id=self.device_id,
            device_name=device_name,
        )

    def pull_events(self) -> list[DomainEvent]:
        events, self.pending_events = self.pending_events, []
        return events

    # --- persistence ------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.session_id,
            "account_id": self.account_id,
            "epoch": self.epoch,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "absolute_expires_at": self.absolute_expires_at,
            "refresh_token_hash": self.refresh_token_hash,
            "device": self.device,
            "ip_hash": self.ip_hash,
            "generation": self.generation,
            "rotated_token_hashes": list(self.rotated_token_hashes),
            "rotated_at": self.rotated_at,
            "grace_token_hashes": list(self.grace_token_hashes),
            "second_factor_pending": self.second_factor_pending,
            "password_change_only": self.password_change_only,
            "revoked_at": self.revoked_at,
            "revoke_reason": self.revoke_reason,
            "device_id": self.device_id,
            "idempotency": self.idempotency.to_doc(),
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Session:
        return cls(
            session_id=str(doc["_id"]),
            account_id=str(doc["account_id"]),
            epoch=int(doc["epoch"]),
            created_at=dt_from_doc(doc["created_at"]),
            last_used_at=dt_from_doc(doc["last_used_at"]),
            absolute_expires_at=dt_from_doc(doc["absolute_expires_at"]),
            refresh_token_hash=str(doc["refresh_token_hash"]),
            device=str(doc["device"]),
            ip_hash=str(doc["ip_hash"]),
            generation=int(doc["generation"]),
            rotated_token_hashes=[str(h) for h in doc["rotated_token_hashes"]],
            rotated_at=opt_dt_from_doc(doc.get("rotated_at")),
            grace_token_hashes=[str(h) for h in doc.get("grace_token_hashes", [])],
            second_factor_pending=bool(doc["second_factor_pending"]),
            password_change_only=bool(doc["password_change_only"]),
            revoked_at=opt_dt_from_doc(doc.get("revoked_at")),
            revoke_reason=doc.get("revoke_reason"),
            device_id=doc.get("device_id"),
            idempotency=IdempotencyLog.from_doc(doc.get("idempotency")),
            version=int(doc["version"]),
        )


def active_sessions(
    sessions: Iterable[Session], now: datetime, account_epoch: int,
    devices: TrustedDevices | None = None,
) -> list[SessionView]:
    """The owner's active sessions, most recently used first, each with the name its trusted
    device has in ``devices`` (the owner's list)."""
    names = devices.names() if devices is not None else {}
    views = [s.view(names.get(s.device_id) if s.device_id else None)
             for s in sessions if s.is_active(now, account_epoch)]
    return sorted(views, key=lambda v: v.last_used_at, reverse=True)
