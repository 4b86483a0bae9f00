"""Support requests: a parent writes (a topic, a text, optionally the child), support or the
school's admin answers, the parent reads the thread and its status and is told of each answer.

Every step is idempotent: a request's id follows from the parent's request id, so a retried
"open" finds the request it opened; an answer carries its own id, so a retried answer is not
posted twice; closing a closed request changes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .clock import require_aware
from .errors import NotifyError, NotifyRejection
from .facts import NotificationEvent, SupportAnsweredFacts
from .kinds import NotificationKind


class SupportStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    CLOSED = "closed"


class Author(StrEnum):
    PARENT = "parent"
    SUPPORT = "support"
    SCHOOL_ADMIN = "school_admin"


def ticket_id_of(account_id: str, request_id: str) -> str:
    """The request's id: the same for a retried "open" of the same parent request."""
    digest = hashlib.sha256(f"{account_id}:{request_id}".encode()).hexdigest()
    return f"sup_{digest[:16]}"


@dataclass(frozen=True, slots=True)
class Post:
    post_id: str
    at: datetime
    author: Author
    text: str = field(repr=False)  # personal data: never in a log line


@dataclass(frozen=True, slots=True)
class SupportAnswered:
    """Domain event: an answer was posted (the parent is to be told)."""

    ticket_id: str
    post_id: str
    account_id: str
    topic: str
    at: datetime
    closed: bool


@dataclass(slots=True)
class SupportTicket:
    ticket_id: str
    account_id: str
    topic: str
    contract: str | None
    school_id: str | None
    status: SupportStatus
    opened_at: datetime
    updated_at: datetime
    thread: list[Post] = field(default_factory=list)
    version: int = 0
    _events: list[SupportAnswered] = field(default_factory=list, repr=False)

    @classmethod
    def open(cls, *, account_id: str, request_id: str, topic: str, text: str,
             contract: str | None, school_id: str | None, at: datetime) -> SupportTicket:
        at = require_aware(at, "at")
        ticket_id = ticket_id_of(account_id, request_id)
        return cls(ticket_id, account_id, topic, contract, school_id, SupportStatus.OPEN, at, at,
                   [Post(f"{ticket_id}:q", at, Author.PARENT, text)], version=1)

    def same_request(self, other: SupportTicket) -> bool:
        """Whether ``other`` (opened again under the same id) is this request retried."""
        return (self.account_id, self.topic, self.contract, self.thread[0].text) == (
            other.account_id, other.topic, other.contract, other.thread[0].text)

    def answer(self, *, post_id: str, author: Author, text: str, at: datetime,
               close: bool = False) -> bool:
        """Post an answer (status ``answered``, or ``closed`` with ``close``); the same
        ``post_id`` again is a no-op. A closed request takes no answer."""
        if any(p.post_id == post_id for p in self.thread):
            return False
        if self.status is SupportStatus.CLOSED:
            raise NotifyError(NotifyRejection.SUPPORT_REQUEST_CLOSED,
                              "the request is closed; the parent may open a new one")
        if author is Author.PARENT:
            raise NotifyError(NotifyRejection.WRONG_GUARDIAN, "answers come from staff")
        at = require_aware(at, "at")
        self.thread.append(Post(post_id, at, author, text))
        self.status = SupportStatus.CLOSED if close else SupportStatus.ANSWERED
        self.updated_at = at
        self.version += 1
        self._events.append(SupportAnswered(self.ticket_id, post_id, self.account_id,
                                            self.topic, at, close))
        return True

    def close(self, at: datetime) -> bool:
        if self.status is SupportStatus.CLOSED:
            return False
        self.status = SupportStatus.CLOSED
        self.updated_at = require_aware(at, "at")
        self.version += 1
        return True

    def pull_events(self) -> list[SupportAnswered]:
        events, self._events = self._events, []
        return events

    # -- persistence (instants as epoch milliseconds: compared and sorted the same on both
    # database servers) ---------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id, "topic": self.topic, "contract": self.contract,
            "school_id": self.school_id, "status": self.status.value,
            "opened_ms": _ms(self.opened_at), "updated_ms": _ms(self.updated_at),
            "thread": [{"id": p.post_id, "at_ms": _ms(p.at), "author": p.author.value,
                        "text": p.text} for p in self.thread],
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, ticket_id: str, doc: dict[str, Any]) -> SupportTicket:
        return cls(
            ticket_id, doc["account_id"], doc["topic"], doc["contract"], doc["school_id"],
            SupportStatus(doc["status"]), _at(doc["opened_ms"]), _at(doc["updated_ms"]),
            [Post(p["id"], _at(p["at_ms"]), Author(p["author"]), p["text"])
             for p in doc["thread"]],
            version=doc["version"])


def answer_notification(event: SupportAnswered) -> NotificationEvent:
    """The parent is told of an answer (to their account, on the channels they chose)."""
    return NotificationEvent(
        f"support:{event.post_id}", NotificationKind.SUPPORT_ANSWERED, event.at,
        SupportAnsweredFacts(event.ticket_id, event.topic, event.at, event.closed),
        account_id=event.account_id)


def author_of(role: str) -> Author:
    """The author an answering staff role posts as."""
    return Author.SCHOOL_ADMIN if role == "school_admin" else Author.SUPPORT


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
