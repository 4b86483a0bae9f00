"""The access service's own projection of cards, and the gate allow-list derived from it.

Card facts come from other services (issuing system, wallet) through Kafka; the projection keeps
only what a gate decision needs. Facts may arrive twice or out of order across topics, so each
one is applied at most once (by event id) and the newest ``occurred_at`` wins per attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from .common import (
    Doc,
    IdempotencyConflict,
    InvalidInput,
    TapReason,
    ValidationReason,
    fingerprint,
    opt_dt_from_doc,
    require_aware,
    require_text,
)
from .events import AllowListEntryChanged

if TYPE_CHECKING:
    from .attendance import Student

RECENT_FACTS_KEPT = 16


class CardStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"  # heard of (blocked/unblocked) but never seen issued


@dataclass(frozen=True, slots=True)
class CardIssued:
    """Input fact: a card was issued (or reissued) to a student of a school and class."""

    event_id: str
    card_uid: str
    contract: str
    school_id: str
    class_name: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class CardBlocked:
    """``own``: this card alone (wallet's block of one credential), not its contract."""

    event_id: str
    card_uid: str
    occurred_at: datetime
    reason: str = ""
    own: bool = False


@dataclass(frozen=True, slots=True)
class CardUnblocked:
    event_id: str
    card_uid: str
    occurred_at: datetime
    own: bool = False


CardFact = CardIssued | CardBlocked | CardUnblocked


def _fact_doc(fact: CardFact) -> Doc:
    doc: Doc = {"type": type(fact).__name__, "card_uid": fact.card_uid, "at": fact.occurred_at}
    if isinstance(fact, CardIssued):
        doc |= {"contract": fact.contract, "school": fact.school_id, "class": fact.class_name}
    elif fact.own:
        doc["own"] = True
    return doc


@dataclass(slots=True)
class CardRecord:
    """One card as the access service knows it (one document per card uid)."""

    card_uid: str
    contract: str | None = None
    school_id: str | None = None
    class_name: str | None = None
    issued_at: datetime | None = None
    blocked: bool = False
    block_changed_at: datetime | None = None
    version: int = 0
    recent_facts: dict[str, str] = field(default_factory=dict)
    own_blocked: bool = False
    own_changed_at: datetime | None = None

    @property
    def status(self) -> CardStatus:
        """Blocked while its contract or the card alone is blocked: a block of one and an
        unblock of the other do not cancel out."""
        if self.issued_at is None:
            return CardStatus.UNKNOWN
        return CardStatus.BLOCKED if self.blocked or self.own_blocked else CardStatus.ACTIVE

    def apply(self, fact: CardFact) -> bool:
        """Apply a fact; return True when the record changed.

        A repeated event id is a no-op (a different payload under the same id raises
        :class:`IdempotencyConflict`). An older fact than the one already applied to the same
        attribute is remembered but changes nothing; at equal times a block beats an unblock.
        """
        if fact.card_uid != self.card_uid:
            raise ValueError("fact for another card")
        require_text(fact.event_id, "event_id")
        at = require_aware(fact.occurred_at, "occurred_at")
        digest = fingerprint(_fact_doc(fact))
        known = self.recent_facts.get(fact.event_id)
        if known is not None:
            if known != digest:
                raise IdempotencyConflict(fact.event_id, "card fact reused with other data")
            return False
        self.recent_facts[fact.event_id] = digest
        while len(self.recent_facts) > RECENT_FACTS_KEPT:
            del self.recent_facts[next(iter(self.recent_facts))]
        changed = False
        if isinstance(fact, CardIssued):
            if self.issued_at is None or at >= self.issued_at:
                before = (self.contract, self.school_id, self.class_name, self.issued_at)
                self.contract = require_text(fact.contract, "contract")
                self.school_id = require_text(fact.school_id, "school_id")
                self.class_name = fact.class_name
                self.issued_at = at
                changed = before != (self.contract, self.school_id, self.class_name, at)
        elif fact.own:
            wants_block = isinstance(fact, CardBlocked)
            newer = self.own_changed_at is None or at > self.own_changed_at
            tie_block = at == self.own_changed_at and wants_block and not self.own_blocked
            if newer or tie_block:
                changed = self.own_blocked != wants_block or self.own_changed_at != at
                self.own_blocked = wants_block
                self.own_changed_at = at
        else:
            wants_block = isinstance(fact, CardBlocked)
            newer = self.block_changed_at is None or at > self.block_changed_at
            tie_block = at == self.block_changed_at and wants_block and not self.blocked
            if newer or tie_block:
                changed = self.blocked != wants_block or self.block_changed_at != at
                self.blocked = wants_block
                self.block_changed_at = at
        # The version moves even when only the fact log changed, so the store persists it.
        self.version += 1
        return changed

    def to_doc(self) -> Doc:
        return {
            "card_uid": self.card_uid,
            "contract": self.contract,
            "school_id": self.school_id,
            "class_name": self.class_name,
            "issued_at": self.issued_at,
            "blocked": self.blocked,
            "block_changed_at": self.block_changed_at,
            "own_blocked": self.own_blocked,
            "own_changed_at": self.own_changed_at,
            "status": self.status.value,
            "version": self.version,
            "recent_facts": [
                {"event_id": k, "fingerprint": v} for k, v in self.recent_facts.items()
            ],
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> CardRecord:
        return cls(
            card_uid=str(doc["card_uid"]),
            contract=doc.get("contract"),
            school_id=doc.get("school_id"),
            class_name=doc.get("class_name"),
            issued_at=opt_dt_from_doc(doc.get("issued_at")),
            blocked=bool(doc["blocked"]),
            block_changed_at=opt_dt_from_doc(doc.get("block_changed_at")),
            version=int(doc["version"]),
            recent_facts={str(f["event_id"]): str(f["fingerprint"]) for f in doc["recent_facts"]},
            own_blocked=bool(doc.get("own_blocked", False)),
            own_changed_at=opt_dt_from_doc(doc.get("own_changed_at")),
        )


@dataclass(frozen=True, slots=True)
class AllowListEntry:
    """What a turnstile caches per card: the card-only part of a gate decision.

    Schedule and anti-passback depend on the clock and on the day's passages, so the gate checks
    them itself (or asks online); a cached entry never allows what the online path would deny on
    the card's identity, because both paths go through :func:`entry_verdict`.
    """

    card_uid: str
    school_id: str | None
    allowed: bool
    reason: TapReason

    def to_doc(self) -> Doc:
        return {
            "card_uid": self.card_uid,
            "school_id": self.school_id,
            "allowed": self.allowed,
            "reason": self.reason.value,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> AllowListEntry:
        return cls(
            card_uid=str(doc["card_uid"]),
            school_id=doc.get("school_id"),
            allowed=bool(doc["allowed"]),
            reason=TapReason(doc["reason"]),
        )


def allow_list_entry(card: CardRecord) -> AllowListEntry:
    status = card.status
    if status is CardStatus.UNKNOWN:
        return AllowListEntry(card.card_uid, card.school_id, False, TapReason.UNKNOWN_CARD)
    if status is CardStatus.BLOCKED:
        return AllowListEntry(card.card_uid, card.school_id, False, TapReason.CARD_BLOCKED)
    return AllowListEntry(card.card_uid, card.school_id, True, TapReason.OK)


def entry_verdict(entry: AllowListEntry | None, gate_school_id: str) -> TapReason:
    """The card-identity verdict at a gate of ``gate_school_id``; shared by online and cache."""
    if entry is None:
        return TapReason.UNKNOWN_CARD
    if not entry.allowed:
        return entry.reason
    if entry.school_id != gate_school_id:
        return TapReason.OTHER_SCHOOL
    return TapReason.OK


def identity_verdict(card: CardRecord | None, gate_school_id: str) -> TapReason:
    return entry_verdict(None if card is None else allow_list_entry(card), gate_school_id)


@dataclass(frozen=True, slots=True)
class CardOutcome:
    card: CardRecord
    changed: bool
    events: tuple[AllowListEntryChanged, ...]


def project_card(card: CardRecord | None, fact: CardFact) -> CardOutcome:
    """Apply a card fact to the projection; emit the new allow-list entry when it changed."""
    return project_facts(card, [fact])


def project_facts(card: CardRecord | None, facts: list[CardFact]) -> CardOutcome:
    """Apply several facts to one card at once; one allow-list event for the net change."""
    if not facts:
        raise ValueError("no facts to apply")
    record = card if card is not None else CardRecord(
        card_uid=require_text(facts[0].card_uid, "uid"))
    before = allow_list_entry(record) if card is not None else None
    changed = False
    for fact in facts:
        changed = record.apply(fact) or changed
    after = allow_list_entry(record)
    events: tuple[AllowListEntryChanged, ...] = ()
    if after != before:
        events = (
            AllowListEntryChanged(after.card_uid, after.school_id, after.allowed, after.reason),
        )
    return CardOutcome(record, changed, events)


@dataclass(slots=True)
class ContractCards:
    """The contract -> cards link (wallet speaks of contracts, gates of card uids).

    It also remembers the latest block state heard for the contract, so a card issued after the
    block (a replacement, or an issuance that arrived late) starts blocked too, and whether the
    contract was replaced by a reissue (its student then leaves the roster).
    """

    contract: str
    card_uids: list[str] = field(default_factory=list)
    blocked: bool | None = None
    block_event_id: str | None = None
    block_reason: str = ""
    block_changed_at: datetime | None = None
    replaced_by: str | None = None
    version: int = 0

    def link(self, card_uid: str) -> None:
        if card_uid not in self.card_uids:
            self.card_uids.append(card_uid)
            self.version += 1

    def unlink(self, card_uid: str) -> None:
        if card_uid in self.card_uids:
            self.card_uids.remove(card_uid)
            self.version += 1

    def note_block(self, event_id: str, blocked: bool, at: datetime, reason: str = "") -> None:
        """Remember the newest block state (at equal times a block wins, as on the card)."""
        at = require_aware(at, "occurred_at")
        newer = self.block_changed_at is None or at > self.block_changed_at
        tie_block = at == self.block_changed_at and blocked and not self.blocked
        if newer or tie_block:
            self.blocked, self.block_event_id = blocked, event_id
            self.block_reason, self.block_changed_at = reason, at
            self.version += 1

    def block_fact(self, card_uid: str) -> CardFact | None:
        """The remembered block state as a fact for one card of the contract."""
        if self.blocked is None or self.block_event_id is None or self.block_changed_at is None:
            return None
        if self.blocked:
            return CardBlocked(self.block_event_id, card_uid, self.block_changed_at,
                               self.block_reason)
        return CardUnblocked(self.block_event_id, card_uid, self.block_changed_at)

    def to_doc(self) -> Doc:
        return {
            "contract": self.contract,
            "card_uids": list(self.card_uids),
            "blocked": self.blocked,
            "block_event_id": self.block_event_id,
            "block_reason": self.block_reason,
            "block_changed_at": self.block_changed_at,
            "replaced_by": self.replaced_by,
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> ContractCards:
        return cls(
            contract=str(doc["contract"]),
            card_uids=[str(u) for u in doc.get("card_uids", [])],
            blocked=doc.get("blocked"),
            block_event_id=doc.get("block_event_id"),
            block_reason=str(doc.get("block_reason") or ""),
            block_changed_at=opt_dt_from_doc(doc.get("block_changed_at")),
            replaced_by=doc.get("replaced_by"),
            version=int(doc.get("version", 0)),
        )


@dataclass(frozen=True, slots=True)
class ContractOutcome:
    """Cards changed by a contract-level fact, with the link to persist."""

    link: ContractCards
    cards: tuple[CardOutcome, ...]

    @property
    def events(self) -> tuple[AllowListEntryChanged, ...]:
        return tuple(e for outcome in self.cards for e in outcome.events)


def issue_card(link: ContractCards | None, card: CardRecord | None,
               fact: CardIssued) -> ContractOutcome:
    """A card issued to a contract: link it and apply the contract's remembered block state."""
    link = link if link is not None else ContractCards(require_text(fact.contract, "contract"))
    link.link(fact.card_uid)
    pending = link.block_fact(fact.card_uid)
    outcome = project_facts(card, [fact] if pending is None else [fact, pending])
    return ContractOutcome(link, (outcome,))


def block_contract(link: ContractCards | None, contract: str, cards: list[CardRecord],
                   event_id: str, blocked: bool, at: datetime,
                   reason: str = "") -> ContractOutcome:
    """Wallet blocked or unblocked a contract: every card of it follows; remembered for cards
    issued later. ``cards`` are the loaded records of ``link.card_uids``."""
    link = link if link is not None else ContractCards(require_text(contract, "contract"))
    link.note_block(event_id, blocked, at, reason)
    outcomes: list[CardOutcome] = []
    for card in cards:
        fact = link.block_fact(card.card_uid)
        if fact is not None:
            outcomes.append(project_card(card, fact))
    return ContractOutcome(link, tuple(outcomes))


def reissue_card(old_link: ContractCards | None, old_cards: list[CardRecord],
                 new_link: ContractCards | None, new_card: CardRecord | None,
                 fact: CardIssued, old_contract: str) -> tuple[ContractOutcome, ContractOutcome]:
    """A card reissued under a new contract (school change): the new card is issued, every card
    of the old contract is denied from now on (``card_blocked``, reason ``reissued``) and the old
    contract leaves the roster. A reissue under the same contract is refused: it would retire
    the contract it issues to."""
    if fact.contract == old_contract:
        raise InvalidInput(ValidationReason.SAME_CONTRACT,
                           f"the new contract is the old one, {old_contract}")
    issued = issue_card(new_link, new_card, fact)
    old = old_link if old_link is not None else ContractCards(old_contract)
    old.replaced_by = fact.contract
    old.version += 1
    retired = tuple(
        project_card(card, CardBlocked(f"reissued:{fact.event_id}", card.card_uid,
                                       fact.occurred_at, "reissued"))
        for card in old_cards
        if card.card_uid != fact.card_uid
    )
    return issued, ContractOutcome(old, retired)


def issue_virtual_card(link: ContractCards | None, card: CardRecord | None,
                       replaced: CardRecord | None, fact: CardIssued,
                       replaces: str | None) -> ContractOutcome:
    """A virtual card (phone/watch NFC id, QR token) of an existing contract: its uid is
    allowed at the gates like the plastic card, under the contract's block state. The uid it
    ``replaces`` is denied from now on (``card_blocked``, reason ``replaced``) and leaves the
    contract, so a later unblock of the contract does not bring it back. A uid already known
    under another contract is refused."""
    if card is not None and card.contract is not None and card.contract != fact.contract:
        raise InvalidInput(ValidationReason.CREDENTIAL_CONFLICT,
                           f"card {fact.card_uid} belongs to another contract")
    issued = issue_card(link, card, fact)
    if replaces is None:
        return issued
    if replaced is None or replaced.contract != fact.contract:
        raise InvalidInput(ValidationReason.UNKNOWN_CREDENTIAL,
                           f"contract {fact.contract} has no card {replaces}")
    issued.link.unlink(replaces)
    retired = project_card(replaced, CardBlocked(f"replaced:{fact.event_id}", replaces,
                                                 fact.occurred_at, "replaced"))
    return ContractOutcome(issued.link, (*issued.cards, retired))


def block_one_card(card: CardRecord | None, card_uid: str, event_id: str, blocked: bool,
                   at: datetime, reason: str = "") -> CardOutcome:
    """One credential blocked or unblocked on its own (the contract's other cards keep their
    state). Kept apart from the contract's block: the card is denied while either holds."""
    fact: CardFact = (CardBlocked(event_id, card_uid, at, reason, own=True) if blocked
                      else CardUnblocked(event_id, card_uid, at, own=True))
    return project_card(card, fact)


def roster(cards: list[CardRecord], retired: set[str]) -> list[Student]:
    """The students behind issued cards, one per contract (the newest card wins), without the
    contracts replaced by a reissue."""
    from .attendance import student_of  # attendance imports this module

    newest: dict[str, CardRecord] = {}
    for card in cards:
        if card.contract is None or card.contract in retired or card.issued_at is None:
            continue
        known = newest.get(card.contract)
        if known is None or (known.issued_at is not None and card.issued_at > known.issued_at):
            newest[card.contract] = card
    students = [student_of(card) for card in newest.values()]
    return sorted((s for s in students if s is not None), key=lambda s: s.contract)
