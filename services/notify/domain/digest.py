"""The daily digest: everything held for a guardian, folded into one message per channel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from .clock import require_aware
from .errors import NotifyError, NotifyRejection
from .facts import DigestFacts, DigestItem, NotificationEvent
from .guardian import Guardian
from .kinds import NotificationKind
from .message import DeliveryStatus, Message, MessageDigested
from .routing import RoutingPlan, route


def digest_event_id(guardian_id: str, day: date) -> str:
    """Deterministic id of a guardian's digest for a day: building it twice gives the same
    dedupe keys, so a re-run of the digest tick never sends a second digest."""
    return f"digest:{guardian_id}:{day.isoformat()}"


@dataclass(frozen=True, slots=True)
class DigestPlan:
    plan: RoutingPlan
    digested: tuple[MessageDigested, ...]

    @property
    def messages(self) -> tuple[Message, ...]:
        return self.plan.messages


def build_digest(
    guardian: Guardian, day: date, held: Sequence[Message], now: datetime
) -> DigestPlan:
    """Fold the guardian's held messages for ``day`` (and any older leftovers) into the digest.

    ``held`` is what the store found for the guardian; messages of other days to come, or no
    longer held (already digested by an earlier run), are left alone, which makes a repeated run
    a no-op. One line per event: the same event held on push and on e-mail is listed once. The
    held messages are marked digested even when the guardian has no channel left for the
    digest itself (the skip is in the plan), so they do not pile up for ever.
    """
    now = require_aware(now)
    if any(m.guardian_id != guardian.account_id for m in held):
        raise NotifyError(NotifyRejection.WRONG_GUARDIAN)
    due = [
        m for m in held
        if m.status is DeliveryStatus.HELD and m.digest_day is not None and m.digest_day <= day
    ]
    if not due:
        return DigestPlan(RoutingPlan((), ()), ())
    several_children = len(guardian.children) > 1
    items: dict[str, DigestItem] = {}
    for m in sorted(due, key=lambda m: (m.occurred_at, m.dedupe_key)):
        if m.event_id in items:
            continue
        text = m.short
        if several_children and m.contract is not None:
            text = f"{guardian.child_label(m.contract) or m.contract}: {text}"
        items[m.event_id] = DigestItem(m.occurred_at, text)
    event_id = digest_event_id(guardian.account_id, day)
    event = NotificationEvent(
        event_id=event_id,
        kind=NotificationKind.DAILY_DIGEST,
        occurred_at=now,
        facts=DigestFacts(day, tuple(items.values())),
        account_id=guardian.account_id,
    )
    plan = route(event, [guardian], now)
    digested = tuple(e for m in due if (e := m.mark_digested(event_id, now)) is not None)
    return DigestPlan(plan, digested)
