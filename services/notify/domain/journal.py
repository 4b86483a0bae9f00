"""The journal a parent reads: one line per message, filtered by a query."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from .kinds import Channel, NotificationKind
from .message import DeliveryStatus, Message


@dataclass(frozen=True, slots=True)
class JournalLine:
    """What the parent sees: never a body, so never a one-time code."""

    guardian_id: str
    dedupe_key: str
    at: datetime
    kind: NotificationKind
    channel: Channel
    status: DeliveryStatus
    text: str
    contract: str | None
    sent_at: datetime | None


def journal_line(message: Message) -> JournalLine | None:
    """The journal line of a message; None for messages to no guardian (one-time codes)."""
    if message.guardian_id is None:
        return None
    return JournalLine(
        guardian_id=message.guardian_id,
        dedupe_key=message.dedupe_key,
        at=message.occurred_at,
        kind=message.kind,
        channel=message.channel,
        status=message.status,
        text=message.short,
        contract=message.contract,
        sent_at=message.sent_at,
    )


@dataclass(frozen=True, slots=True)
class JournalQuery:
    """Filters combine with AND; an empty set or None means "any". ``since`` is inclusive,
    ``until`` exclusive, so consecutive windows never show a line twice."""

    guardian_id: str
    since: datetime | None = None
    until: datetime | None = None
    kinds: frozenset[NotificationKind] = frozenset()
    channels: frozenset[Channel] = frozenset()
    statuses: frozenset[DeliveryStatus] = frozenset()
    contract: str | None = None
    limit: int = 50
    offset: int = 0

    def matches(self, line: JournalLine) -> bool:
        return (
            line.guardian_id == self.guardian_id
            and (self.since is None or line.at >= self.since)
            and (self.until is None or line.at < self.until)
            and (not self.kinds or line.kind in self.kinds)
            and (not self.channels or line.channel in self.channels)
            and (not self.statuses or line.status in self.statuses)
            and (self.contract is None or line.contract == self.contract)
        )


def filter_journal(lines: Iterable[JournalLine], query: JournalQuery) -> list[JournalLine]:
    """Matching lines, newest first (ties by dedupe key, so pages are stable)."""
    chosen = [line for line in lines if query.matches(line)]
    chosen.sort(key=lambda line: line.dedupe_key)
    chosen.sort(key=lambda line: line.at, reverse=True)
    return chosen[query.offset : query.offset + max(0, query.limit)]


def shown_status(message: Message, now: datetime) -> str:
    """The status a parent reads: a message held (quiet hours, digest) or not yet due is
    ``deferred``; otherwise its delivery status."""
    if message.status is DeliveryStatus.HELD or (
            message.due_at is not None and message.due_at > now
            and message.status is DeliveryStatus.PENDING):
        return "deferred"
    return message.status.value


@dataclass(frozen=True, slots=True)
class JournalFilter:
    """The journal filters a parent sets (``GetJournal``): they combine with AND; an empty
    set or None means "any". ``since`` is inclusive, ``until`` exclusive. ``status`` is the
    shown status (``shown_status``)."""

    kinds: frozenset[NotificationKind] = frozenset()
    channel: Channel | None = None
    status: str | None = None
    contract: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, line: JournalLine, status: str) -> bool:
        return (
            (not self.kinds or line.kind in self.kinds)
            and (self.channel is None or line.channel is self.channel)
            and (self.status is None or status == self.status)
            and (self.contract is None or line.contract == self.contract)
            and (self.since is None or line.at >= self.since)
            and (self.until is None or line.at < self.until)
        )


def select_journal(messages: Iterable[Message], journal_filter: JournalFilter,
                   now: datetime) -> list[tuple[JournalLine, str]]:
    """The lines (with their shown status) of ``messages`` that match, newest first, ties by
    dedupe key (the order the journal pages on)."""
    chosen = [(line, status) for m in messages
              if (line := journal_line(m)) is not None
              and journal_filter.matches(line, status := shown_status(m, now))]
    chosen.sort(key=lambda e: e[0].dedupe_key, reverse=True)
    chosen.sort(key=lambda e: e[0].at, reverse=True)
    return chosen
