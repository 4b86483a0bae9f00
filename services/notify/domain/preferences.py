"""A guardian's notification settings read back: what routing will do, kind by kind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from .guardian import Guardian
from .kinds import SECURITY_KINDS, Channel, NotificationKind, channels_for

GUARDIAN_KINDS: tuple[NotificationKind, ...] = tuple(
    k for k in NotificationKind if k is not NotificationKind.ONE_TIME_CODE)
"""Every kind a guardian can receive (a one-time code goes to a phone, not to a guardian)."""


@dataclass(frozen=True, slots=True)
class PreferencesView:
    account_id: str
    channels: dict[NotificationKind, tuple[Channel, ...]]
    always_on: tuple[NotificationKind, ...]
    quiet_hours: tuple[time, time] | None
    time_zone: str
    daily_digest: bool
    digest_at: time
    digest_kinds: tuple[NotificationKind, ...]
    sms_informer: bool
    push: bool


def preferences_of(guardian: Guardian) -> PreferencesView:
    """The effective channels per kind (defaults, the guardian's choices and the service
    switches together, as ``Guardian.wants`` answers routing), and the rest as set."""
    channels = {
        kind: tuple(ch for ch in Channel if ch in channels_for(kind) and guardian.wants(kind, ch))
        for kind in GUARDIAN_KINDS
    }
    quiet = guardian.quiet_hours
    return PreferencesView(
        account_id=guardian.account_id,
        channels=channels,
        always_on=tuple(k for k in GUARDIAN_KINDS if k in SECURITY_KINDS),
        quiet_hours=None if quiet is None or quiet.start == quiet.end
        else (quiet.start, quiet.end),
        time_zone=guardian.time_zone,
        daily_digest=guardian.digest_enabled,
        digest_at=guardian.digest_time,
        digest_kinds=tuple(sorted(guardian.digest_kinds)),
        sms_informer=guardian.sms_informer,
        push=guardian.push_service,
    )
