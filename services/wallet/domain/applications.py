"""Applications («заявления через личный кабинет»): a parent asks for a new card (lost,
damaged) or for the refund of the remaining balance on leaving the school; the school's admin
or support handles it.

    submitted --accept--> accepted --done--> done
        |  \\--done-------------------------^
        \\--refuse--> refused

A repeated decision (accept an accepted application, finish a done one) changes nothing; any
other move out of a final status is refused (``application_closed``). A refund application
that is done pays the money out of the account (``Account.pay_out``) in the same unit of work,
exactly once: the transition happens once, and its ledger operation id is the application id.
A new-card application still open when the card is actually reissued (the issuer's
``CardReissued``) is done by itself (:func:`done_by_reissue`). Each change records
``ApplicationChanged`` for notify.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.wallet.domain._codec import from_plain, to_plain
from services.wallet.domain.values import RejectionReason, WalletRejected, require_aware

COMMENT_MAX = 500


class ApplicationKind(StrEnum):
    NEW_CARD = "new_card"
    REFUND = "refund"


class ApplicationReason(StrEnum):
    LOST = "lost"
    DAMAGED = "damaged"
    LEAVING_SCHOOL = "leaving_school"
    OTHER = "other"


class ApplicationStatus(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    DONE = "done"


class ApplicationDecision(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    DONE = "done"


_REASONS = {
    ApplicationKind.NEW_CARD: {ApplicationReason.LOST, ApplicationReason.DAMAGED,
                               ApplicationReason.OTHER},
    ApplicationKind.REFUND: {ApplicationReason.LEAVING_SCHOOL, ApplicationReason.OTHER},
}
_MOVES = {
    (ApplicationStatus.SUBMITTED, ApplicationDecision.ACCEPT): ApplicationStatus.ACCEPTED,
    (ApplicationStatus.SUBMITTED, ApplicationDecision.REFUSE): ApplicationStatus.REFUSED,
    (ApplicationStatus.SUBMITTED, ApplicationDecision.DONE): ApplicationStatus.DONE,
    (ApplicationStatus.ACCEPTED, ApplicationDecision.DONE): ApplicationStatus.DONE,
    (ApplicationStatus.ACCEPTED, ApplicationDecision.REFUSE): ApplicationStatus.REFUSED,
}
_OPEN = (ApplicationStatus.SUBMITTED, ApplicationStatus.ACCEPTED)


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: ApplicationStatus
    at: datetime
    by: str
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ApplicationChanged:
    """Domain event: an application was submitted or moved to another status."""

    application_id: str
    contract: str
    kind: ApplicationKind
    status: ApplicationStatus
    comment: str
    refunded: int | None
    at: datetime


@dataclass(slots=True)
class Application:
    application_id: str
    contract: str
    school_id: str
    kind: ApplicationKind
    reason: ApplicationReason
    comment: str
    submitted_by: str
    submitted_at: datetime
    status: ApplicationStatus = ApplicationStatus.SUBMITTED
    history: list[StatusChange] = field(default_factory=list)
    refunded: int | None = None
    version: int = 0
    _events: list[ApplicationChanged] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def submit(cls, application_id: str, *, contract: str, school_id: str,
               kind: ApplicationKind, reason: ApplicationReason, comment: str, by: str,
               now: datetime, others: Iterable[Application] = (),
               existing: Application | None = None) -> Application:
        """A new application (``invalid_application``: a reason that does not fit the kind;
        ``application_open``: the child has an open application of that kind). ``existing``,
        the application already under this id, is returned unchanged when it was submitted
        with the same contract, kind and reason (a retried request), else
        ``idempotency_conflict``."""
        at = require_aware(now)
        kind, reason = ApplicationKind(kind), ApplicationReason(reason)
        if existing is not None:
            if (existing.contract, existing.kind, existing.reason) != (contract, kind, reason):
                raise WalletRejected(RejectionReason.IDEMPOTENCY_CONFLICT,
                                     f"application {application_id} was submitted otherwise")
            return existing
        if reason not in _REASONS[kind]:
            raise WalletRejected(RejectionReason.INVALID_APPLICATION,
                                 f"{reason.value} does not fit a {kind.value} application")
        if any(o.kind is kind and o.is_open and o.application_id != application_id
               for o in others):
            raise WalletRejected(RejectionReason.APPLICATION_OPEN,
                                 f"the child has an open {kind.value} application")
        app = cls(application_id, contract, school_id, kind, reason, comment.strip()[:COMMENT_MAX],
                  by, at, history=[StatusChange(ApplicationStatus.SUBMITTED, at, by)], version=1)
        app._record(at)
        return app

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN

    @property
    def staff_comment(self) -> str:
        handled = [c for c in self.history if c.status is not ApplicationStatus.SUBMITTED]
        return handled[-1].comment if handled else ""

    @property
    def updated_at(self) -> datetime:
        return self.history[-1].at if self.history else self.submitted_at

    @property
    def awaits_payout(self) -> bool:
        """A done refund application whose money has not been paid out yet."""
        return (self.kind is ApplicationKind.REFUND and self.status is ApplicationStatus.DONE
                and self.refunded is None)

    def decide(self, decision: ApplicationDecision, *, by: str, comment: str,
               now: datetime) -> ApplicationStatus | None:
        """Move the application; returns the new status, or None when ``decision`` repeats
        the status it is in (nothing changes). A refusal needs a comment
        (``comment_required``); another move out of refused or done is ``application_closed``.
        A refund application's ``done`` is completed by :meth:`paid_out`."""
        at = require_aware(now)
        decision = ApplicationDecision(decision)
        target = _MOVES.get((self.status, decision))
        if target is None:
            if _same(self.status, decision):
                return None
            raise WalletRejected(RejectionReason.APPLICATION_CLOSED,
                                 f"the application is {self.status.value}")
        comment = comment.strip()[:COMMENT_MAX]
        if target is ApplicationStatus.REFUSED and not comment:
            raise WalletRejected(RejectionReason.COMMENT_REQUIRED, "say why it is refused")
        self.status = target
        self.history.append(StatusChange(target, at, by, comment))
        self.version += 1
        if target is not ApplicationStatus.DONE or self.kind is not ApplicationKind.REFUND:
            self._record(at)
        return target

    def paid_out(self, amount: int, *, now: datetime) -> None:
        """The refund of a done refund application was paid out (``amount`` kopecks)."""
        self.refunded = amount
        self._record(require_aware(now))

    def pull_events(self) -> list[ApplicationChanged]:
        events, self._events = self._events, []
        return events

    def _record(self, at: datetime) -> None:
        self._events.append(ApplicationChanged(
            self.application_id, self.contract, self.kind, self.status,
            self.staff_comment, self.refunded, at))

    def to_doc(self) -> dict[str, Any]:
        return {name: to_plain(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Application:
        hints = {"application_id": str, "contract": str, "school_id": str,
                 "kind": ApplicationKind, "reason": ApplicationReason, "comment": str,
                 "submitted_by": str, "submitted_at": datetime, "status": ApplicationStatus,
                 "history": list[StatusChange], "refunded": int | None, "version": int}
        return cls(**{name: from_plain(hints[name], doc[name]) for name in _FIELDS
                      if name in doc})


_FIELDS = ("application_id", "contract", "school_id", "kind", "reason", "comment",
           "submitted_by", "submitted_at", "status", "history", "refunded", "version")


CARD_REISSUED_BY = "system:card-reissue"
"""Who finished a new-card application that the reissue itself closed."""
CARD_REISSUED_COMMENT = "new card issued"


def done_by_reissue(applications: Iterable[Application], *, now: datetime) -> list[Application]:
    """The child's card was reissued: each of its open (submitted or accepted) new-card
    applications becomes done with the comment "new card issued"; the ones changed are
    returned. A repeated reissue finds none open and changes nothing."""
    done = [a for a in applications if a.kind is ApplicationKind.NEW_CARD and a.is_open]
    for application in done:
        application.decide(ApplicationDecision.DONE, by=CARD_REISSUED_BY,
                           comment=CARD_REISSUED_COMMENT, now=now)
    return done


def _same(status: ApplicationStatus, decision: ApplicationDecision) -> bool:
    return (status, decision) in {(ApplicationStatus.ACCEPTED, ApplicationDecision.ACCEPT),
                                  (ApplicationStatus.REFUSED, ApplicationDecision.REFUSE),
                                  (ApplicationStatus.DONE, ApplicationDecision.DONE)}
