"""Contracts owned by notify: one-time code requests (the only topic that carries codes),
preferences, delivery status and the journal query."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.envelope import Command, Event, Part, Query, Reply
from contracts.types import AccountId, Identifier, Locale, LocalTime, Phone, Secret, UtcDatetime


class Channel(StrEnum):
    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"


class OneTimeCodeRequested(Event):
    """Auth asks notify to send a code by SMS. The code appears nowhere else: not in logs, not
    in the journal (which shows it masked), not in any other topic."""

    request_id: Identifier
    phone: Phone
    code: Secret = Field(description="6 digits.", examples=["493817"])
    purpose: str = Field(description="registration | password_reset | login",
                         examples=["registration"])
    locale: Locale = Locale.RU
    expires_at: UtcDatetime


class SetPreferences(Command):
    request_id: Identifier
    account_id: AccountId
    channels: dict[str, list[Channel]] | None = Field(
        default=None, description="Per notification kind, the channels wanted.",
        examples=[{"canteen_purchase": ["push"], "top_up": ["push", "email"]}])
    quiet_from: LocalTime | None = None
    quiet_to: LocalTime | None = None
    daily_digest: bool | None = None


class RegisterPushToken(Command):
    request_id: Identifier
    account_id: AccountId
    token: Secret
    platform: str = Field(default="android", examples=["ios"])


class NotificationDelivered(Event):
    """Delivery status on notify.deliveries.v1 (key: guardian account)."""

    notification_id: Identifier = Field(description="Stable: event id + guardian + channel.")
    account_id: AccountId | None
    channel: Channel
    kind: str
    status: str = Field(description="sent | failed | dead | deferred")
    attempts: int
    at: UtcDatetime


class GetJournal(Query):
    account_id: AccountId
    limit: int = Field(default=50, ge=1, le=500)


class JournalLine(Part):
    at: UtcDatetime
    kind: str
    channel: Channel
    status: str
    text: str


class JournalReply(Reply):
    lines: list[JournalLine] = Field(default_factory=list)
