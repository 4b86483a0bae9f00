"""Card credentials: the uids a till may read for one child's account.

The plastic card's uid lives on the account (``Account.card_uid``). A virtual card (a phone or
watch NFC id, or a QR token the issuer rotates) is a second credential of the same contract: a
sale read from it pays from the same account. Each credential is blocked, unblocked and retired
(replaced) on its own; blocking the whole account (``Account.block_card``) still refuses every
credential. A plastic card gets a credential record only when it is blocked on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.wallet.domain.values import RejectionReason, WalletRejected, require_aware


class CredentialState(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"
    RETIRED = "retired"


@dataclass(slots=True)
class Credential:
    """One uid of a contract; ``kind`` None is the plastic card."""

    card_uid: str
    contract: str
    kind: str | None
    state: CredentialState
    issued_at: datetime
    changed_at: datetime
    replaced_by: str | None = None
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"card_uid": self.card_uid, "contract": self.contract, "kind": self.kind,
                "state": self.state.value, "issued_at": self.issued_at,
                "changed_at": self.changed_at, "replaced_by": self.replaced_by,
                "version": self.version}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Credential:
        return cls(str(doc["card_uid"]), str(doc["contract"]), doc.get("kind"),
                   CredentialState(doc["state"]), require_aware(doc["issued_at"]),
                   require_aware(doc["changed_at"]), doc.get("replaced_by"),
                   int(doc["version"]))


@dataclass(frozen=True, slots=True)
class CredentialBlocked:
    """Domain event: one credential blocked (``blocked``) or unblocked on its own."""

    contract: str
    card_uid: str
    blocked: bool
    reason: str
    by: str | None
    at: datetime


def _conflict(detail: str) -> WalletRejected:
    return WalletRejected(RejectionReason.CREDENTIAL_CONFLICT, detail)


def issue_virtual(existing: Credential | None, replaced: Credential | None, *, card_uid: str,
                  contract: str, kind: str, plastic_uid: str, replaces: str | None,
                  at: datetime) -> list[Credential]:
    """Map a virtual uid to the contract (and retire the one it replaces); the changed records.

    A redelivery (the uid already on this contract) changes nothing. A uid that is the plastic
    card's or belongs to another contract is refused, as is replacing a uid that is not a
    virtual credential of the same contract.
    """
    at = require_aware(at)
    if card_uid == plastic_uid:
        raise _conflict(f"{card_uid} is the plastic card of {contract}")
    if existing is not None:
        if existing.contract != contract or existing.kind is None:
            raise _conflict(f"{card_uid} already belongs to another card")
        return []
    changed: list[Credential] = []
    if replaces is not None:
        if replaced is None or replaced.contract != contract or replaced.kind is None:
            raise WalletRejected(RejectionReason.UNKNOWN_CREDENTIAL,
                                 f"{contract} has no virtual credential {replaces}")
        if replaced.state is not CredentialState.RETIRED:
            replaced.state, replaced.changed_at = CredentialState.RETIRED, at
            replaced.replaced_by = card_uid
            replaced.version += 1
            changed.append(replaced)
    changed.append(Credential(card_uid, contract, kind, CredentialState.ACTIVE, at, at))
    return changed


def set_blocked(credential: Credential | None, *, card_uid: str, contract: str,
                plastic_uid: str, blocked: bool, at: datetime, reason: str = "lost",
                by: str | None = None) -> tuple[Credential, CredentialBlocked | None]:
    """Block or unblock one credential of ``contract``; a repeat changes nothing (no event).
    The plastic card's record is created on its first own block. A retired credential stays
    retired."""
    at = require_aware(at)
    if credential is None and card_uid == plastic_uid:
        credential = Credential(card_uid, contract, None, CredentialState.ACTIVE, at, at)
    if credential is None or credential.contract != contract:
        raise WalletRejected(RejectionReason.UNKNOWN_CREDENTIAL,
                             f"{contract} has no card {card_uid}")
    if credential.state is CredentialState.RETIRED:
        raise WalletRejected(RejectionReason.CREDENTIAL_RETIRED,
                             f"{card_uid} was replaced by {credential.replaced_by}")
    target = CredentialState.BLOCKED if blocked else CredentialState.ACTIVE
    if credential.state is target:
        return credential, None
    credential.state, credential.changed_at = target, at
    credential.version += 1
    return credential, CredentialBlocked(contract, card_uid, blocked,
                                         reason if blocked else "", by, at)


def refuses_sale(credential: Credential | None) -> bool:
    """True when a till reading this uid must be declined ``card_blocked`` (the credential is
    blocked on its own or retired); None (no record) defers to the account."""
    return credential is not None and credential.state is not CredentialState.ACTIVE


def listing(plastic_uid: str, opened_at: datetime,
            credentials: list[Credential]) -> list[Credential]:
    """The plastic card first (its own record, or an active one since the account opened),
    then the virtual credentials by issue time."""
    plastic = next((c for c in credentials if c.card_uid == plastic_uid), None)
    if plastic is None:
        plastic = Credential(plastic_uid, "", None, CredentialState.ACTIVE, opened_at, opened_at)
    virtual = sorted((c for c in credentials if c.kind is not None),
                     key=lambda c: (c.issued_at, c.card_uid))
    return [plastic, *virtual]
