"""Children, their contracts and their guardians.

A child is created from the card-issuing system's events (contract number, school, birth date,
optional activation code). Parents link themselves with proof (the activation code where the
issuer sent one, else contract + birth date); the first one becomes *primary*; the primary
invites co-guardians and viewers and removes them. A card reissue moves the child to a new
contract and keeps the guardians.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from ..security import ChildClaim, ChildRole
from .common import (
    AuthRejected,
    DomainEvent,
    FailureWindow,
    IdempotencyLog,
    Reason,
    date_from_doc,
    date_to_doc,
    dt_from_doc,
    fingerprint,
    require_aware,
    require_support_reason,
)
from .events import (
    ChildLinkRefused,
    ChildProofsUnlocked,
    ChildRegistered,
    ContractReissued,
    GuardianInvitationRevoked,
    GuardianInvited,
    GuardianLinked,
    GuardianRemoved,
    GuardianRoleChanged,
)

GuardianRole = ChildRole
INVITATION_TTL = timedelta(days=7)
CHILD_NAME_MAX_LENGTH = 64
PROOF_FAILURE_LIMIT = 10  # per child per rolling hour, any proof
BIRTH_DATE_PROOF_BUDGET = 10  # per child for good: a birth date has only ~5,000 guesses


# Who may do what for a child is one table, services.runtime.authorization.PERMISSIONS, read by
# every service from the token's ``children``; the only rule this aggregate enforces itself is
# its own invariant: guardians are managed by the primary (there "manage_guardians" is
# primary-only).


class ProofKind(StrEnum):
    CONTRACT_AND_BIRTH_DATE = "contract_and_birth_date"
    ACTIVATION_CODE = "activation_code"
    INVITATION = "invitation"


@dataclass(frozen=True)
class ContractProof:
    contract_number: str
    birth_date: date


@dataclass(frozen=True)
class ActivationCodeProof:
    activation_code: str


@dataclass(frozen=True)
class ActivationMacProof:
    """An activation code given at registration, kept until the phone was confirmed as its
    keyed MAC (:func:`activation_code_mac` for this child), never in clear."""

    mac: str


Proof = ContractProof | ActivationCodeProof | ActivationMacProof


def activation_code_digest(child_id: str, code: str) -> str:
    """What the card issuer sends in ``CardIssued.activation_code_hash``: the hex SHA-256 of
    ``<student_id> 0x1F <code>``, the code upper-cased without spaces and dashes."""
    normalized = code.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(f"{child_id}\x1f{normalized}".encode()).hexdigest()


def activation_digest_mac(pepper: bytes, child_id: str, digest: str) -> str:
    """What auth keeps of the issuer's digest: keyed with the pepper, so the database alone
    gives no offline test of a code."""
    return hmac.new(pepper, f"{child_id}\x1f{digest.lower()}".encode(),
                    hashlib.sha256).hexdigest()


def activation_code_mac(pepper: bytes, child_id: str, code: str) -> str:
    return activation_digest_mac(pepper, child_id, activation_code_digest(child_id, code))


@dataclass
class Invitation:
    invitation_id: str
    role: GuardianRole
    invited_by: str
    token_hash: str
    created_at: datetime
    expires_at: datetime
    account_id: str | None = None
    """The invitee's account, for an invitation addressed to one (InviteGuardian by phone);
    None for a token invitation taken up by whoever holds the token."""

    def to_doc(self) -> dict[str, Any]:
        return {"invitation_id": self.invitation_id, "role": self.role.value,
                "invited_by": self.invited_by, "token_hash": self.token_hash,
                "created_at": self.created_at, "expires_at": self.expires_at,
                "account_id": self.account_id}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Invitation:
        return cls(str(doc["invitation_id"]), GuardianRole(doc["role"]), str(doc["invited_by"]),
                   str(doc["token_hash"]), dt_from_doc(doc["created_at"]),
                   dt_from_doc(doc["expires_at"]), doc.get("account_id"))


@dataclass(frozen=True)
class LinkOutcome:
    rejection: Reason | None = None
    role: GuardianRole | None = None
    replayed: bool = False
    displaced: str | None = None
    """The provisional contract login the link took the child from (its account is to be
    closed: ``Account.give_way_to_activation_code``); never set on a replay."""

    def require_ok(self) -> None:
        """Raise the rejection (after the caller persisted the failed proof it counted)."""
        if self.rejection is not None:
            raise AuthRejected(self.rejection)

    def to_doc(self) -> dict[str, Any]:
        return {"rejection": self.rejection.value if self.rejection else None,
                "role": self.role.value if self.role else None}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LinkOutcome:
        return cls(Reason(doc["rejection"]) if doc.get("rejection") else None,
                   GuardianRole(doc["role"]) if doc.get("role") else None, replayed=True)


def _proof_throttle() -> FailureWindow:
    return FailureWindow(limit=PROOF_FAILURE_LIMIT, free_failures=PROOF_FAILURE_LIMIT,
                         limit_reason=Reason.CHILD_PROOF_RATE_LIMITED,
                         delay_reason=Reason.CHILD_PROOF_RATE_LIMITED)


@dataclass
class Child:
    child_id: str
    contract_number: str
    school_id: str
    birth_date: date
    created_at: datetime
    previous_contracts: list[str] = field(default_factory=list)
    activation_code_mac: str | None = None
    guardians: dict[str, GuardianRole] = field(default_factory=dict)
    invitations: dict[str, Invitation] = field(default_factory=dict)
    proof_failures: FailureWindow = field(default_factory=_proof_throttle)
    birth_date_failures: int = 0
    display_name: str | None = None
    """What the family calls the child in the cabinet (kept by auth for its guardians only,
    never on a topic integrators read)."""
    idempotency: IdempotencyLog = field(default_factory=IdempotencyLog)
    version: int = 0
    pending_events: list[DomainEvent] = field(default_factory=list, repr=False)

    @classmethod
    def register(
        cls, *, child_id: str, contract_number: str, school_id: str, birth_date: date,
        now: datetime, activation_code_mac: str | None = None,
    ) -> Child:
        now = require_aware(now)
        child = cls(child_id=child_id, contract_number=contract_number, school_id=school_id,
                    birth_date=birth_date, created_at=now,
                    activation_code_mac=activation_code_mac)
        child.pending_events.append(ChildRegistered(occurred_at=now, child_id=child_id,
                                                    contract_number=contract_number,
                                                    school_id=school_id))
        return child

    # --- queries ----------------------------------------------------------------------------

    @property
    def primary(self) -> str | None:
        return next((a for a, r in self.guardians.items() if r is GuardianRole.PRIMARY), None)

    def role_of(self, account_id: str) -> GuardianRole | None:
        return self.guardians.get(account_id)

    def claim_for(self, account_id: str) -> ChildClaim | None:
        """The ``children`` entry of this guardian's access token."""
        role = self.role_of(account_id)
        return None if role is None else ChildClaim(self.contract_number, role)

    def _require_primary(self, account_id: str) -> None:
        if account_id not in self.guardians:
            raise AuthRejected(Reason.NOT_A_GUARDIAN)
        if self.guardians[account_id] is not GuardianRole.PRIMARY:
            raise AuthRejected(Reason.NOT_PERMITTED, "manage_guardians")

    # --- linking ----------------------------------------------------------------------------

    def link_with_proof(
        self, *, account_id: str, proof: Proof, pepper: bytes,
        now: datetime, idempotency_key: str | None = None, provisional: str | None = None,
    ) -> LinkOutcome:
        """Link a parent who proves knowledge of the child; only a child without a primary can
        be claimed this way (the claimant becomes primary), otherwise the primary invites.

        * One exception: ``provisional`` names the primary when it is the login the issuer
          created for the contract and it has not confirmed a phone yet
          (``Account.holds_contract_provisionally``). The issuer's activation code, the
          stronger proof, takes the child from it: it is removed (``GuardianRemoved``) and
          the claimant becomes primary (``LinkOutcome.displaced`` names it). A birth date
          never does (the provisional login was made from it); once that login confirmed a
          phone it is a real parent and the claimant is answered as for any claimed child.

        * Where the issuer sent an activation code, only the code proves: a birth date is
          refused like a wrong one (it is guessable, the code is not).
        * A child that already has a primary answers every proof, right or wrong, as a wrong
          one, and counts it: the answer must not confirm a birth date or a code.
        * Refused proofs count against the child, 10 per rolling hour (then
          ``CHILD_PROOF_RATE_LIMITED``), and refused birth dates also for good: after
          ``BIRTH_DATE_PROOF_BUDGET`` of them no birth date is looked at any more (refused as
          wrong, even the right one) until support unlocks (:meth:`unlock_proofs`). The
          first refusal of an hour tells the primary guardian, if there is one
          (``ChildLinkRefused``).
        """
        now = require_aware(now)
        # Proofs are low-entropy: they enter the fingerprint only through the pepper.
        if isinstance(proof, ActivationMacProof):
            proof_fp = proof.mac
        else:
            proof_text = (f"{proof.contract_number}|{proof.birth_date.isoformat()}"
                          if isinstance(proof, ContractProof) else proof.activation_code)
            proof_fp = activation_code_mac(pepper, self.child_id, proof_text)
        fp = fingerprint(op="link", account=account_id, proof=proof_fp)
        stored = self.idempotency.replay(idempotency_key, fp)
        if stored is not None:
            return LinkOutcome.from_doc(stored)
        if account_id in self.guardians:
            raise AuthRejected(Reason.ALREADY_GUARDIAN)
        by_birth_date = isinstance(proof, ContractProof)
        if by_birth_date and self.birth_date_failures >= BIRTH_DATE_PROOF_BUDGET:
            outcome = LinkOutcome(Reason.CHILD_PROOF_INVALID)
            self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
            return outcome
        gate = self.proof_failures.gate(now)
        if not gate.allowed:
            raise AuthRejected(Reason.CHILD_PROOF_RATE_LIMITED, retry_after=gate.retry_after)
        displaced = (self.primary if provisional is not None and not by_birth_date
                     and self.primary == provisional else None)
        if ((self.primary is not None and displaced is None)
                or not self._proof_matches(proof, pepper)):
            self._refuse_proof(account_id, by_birth_date, now)
            outcome = LinkOutcome(Reason.CHILD_PROOF_INVALID)
        else:
            via = (ProofKind.CONTRACT_AND_BIRTH_DATE if by_birth_date
                   else ProofKind.ACTIVATION_CODE)
            if displaced is not None:
                self._displace(displaced, by=account_id, now=now)
            self._add(account_id, GuardianRole.PRIMARY, via, now)
            outcome = LinkOutcome(role=GuardianRole.PRIMARY, displaced=displaced)
        self.idempotency.remember(idempotency_key, fp, outcome.to_doc())
        return outcome

    def _displace(self, account_id: str, *, by: str, now: datetime) -> None:
        """Remove the provisional primary and the invitations it made (they were its to
        give, not the new primary's)."""
        role = self.guardians.pop(account_id)
        self.invitations = {k: v for k, v in self.invitations.items()
                            if v.invited_by != account_id}
        self.pending_events.append(
            GuardianRemoved(occurred_at=now, child_id=self.child_id,
                            contract_number=self.contract_number, account_id=account_id,
                            role=role.value, removed_by=by)
        )

    def _refuse_proof(self, account_id: str, by_birth_date: bool, now: datetime) -> None:
        self.proof_failures.record_failure(now)
        if by_birth_date:
            self.birth_date_failures += 1
        failures = self.proof_failures.count(now)
        self.pending_events.append(
            ChildLinkRefused(occurred_at=now, child_id=self.child_id,
                             contract_number=self.contract_number, account_id=account_id,
                             failures_in_window=failures,
                             alert_account_id=self.primary if failures == 1 else None)
        )

    def link_issued_login(self, *, account_id: str, now: datetime) -> None:
        """The parent login the issuer provisioned for the contract becomes the primary (the
        issuer vouches for it; no proof is asked)."""
        self._add(account_id, GuardianRole.PRIMARY, ProofKind.CONTRACT_AND_BIRTH_DATE,
                  require_aware(now))

    def unlock_proofs(self, *, by_account_id: str, reason: str, now: datetime) -> None:
        """Support lets proofs be tried again (identity checked outside the system, ``reason``
        of at least 10 characters): the hourly window and the birth-date budget start over
        (``ChildProofsUnlocked``)."""
        require_support_reason(reason)
        cleared = self.birth_date_failures
        self.birth_date_failures = 0
        self.proof_failures.clear()
        self.pending_events.append(
            ChildProofsUnlocked(occurred_at=require_aware(now), child_id=self.child_id,
                                by_account_id=by_account_id, birth_dates_cleared=cleared))

    def _proof_matches(self, proof: Proof, pepper: bytes) -> bool:
        if isinstance(proof, ContractProof):
            if self.activation_code_mac is not None:
                return False  # the issuer's code is the proof for this child
            return (hmac.compare_digest(proof.contract_number, self.contract_number)
                    and proof.birth_date == self.birth_date)
        if self.activation_code_mac is None:
            return False
        presented = (proof.mac if isinstance(proof, ActivationMacProof)
                     else activation_code_mac(pepper, self.child_id, proof.activation_code))
        return hmac.compare_digest(presented, self.activation_code_mac)

    def _add(self, account_id: str, role: GuardianRole, via: ProofKind, now: datetime) -> None:
        self.guardians[account_id] = role
        self.pending_events.append(
            GuardianLinked(occurred_at=now, child_id=self.child_id,
                           contract_number=self.contract_number, account_id=account_id,
                           role=role.value, via=via.value)
        )

    # --- invitations ------------------------------------------------------------------------

    def invite(
        self, *, by_account_id: str, role: GuardianRole, invitation_id: str, token_hash: str,
        now: datetime, account_id: str | None = None,
    ) -> Invitation:
        """The primary invites a co-guardian or a viewer: the account ``account_id`` (it
        accepts: :meth:`accept_addressed_invitation`), or whoever holds the token (sent out
        of band, stored hashed). Re-inviting with the same id is a no-op; an account that
        already guards the child is ``ALREADY_GUARDIAN``; an earlier open invitation of the
        same account is replaced."""
        now = require_aware(now)
        self._require_primary(by_account_id)
        if role is GuardianRole.PRIMARY:
            raise AuthRejected(Reason.INVALID_ROLE, "the primary is not invited")
        existing = self.invitations.get(invitation_id)
        if existing is not None:
            same_token = account_id is not None or existing.token_hash == token_hash
            if (existing.role, existing.account_id) != (role, account_id) or not same_token:
                raise AuthRejected(Reason.IDEMPOTENCY_KEY_REUSED, invitation_id)
            return existing
        if account_id is not None:
            if account_id in self.guardians:
                raise AuthRejected(Reason.ALREADY_GUARDIAN)
            self.invitations = {k: v for k, v in self.invitations.items()
                                if v.account_id != account_id}
        invitation = Invitation(invitation_id, role, by_account_id, token_hash, now,
                                now + INVITATION_TTL, account_id)
        self.invitations[invitation_id] = invitation
        self.pending_events.append(
            GuardianInvited(occurred_at=now, child_id=self.child_id,
                            contract_number=self.contract_number,
                            invitation_id=invitation_id, role=role.value,
                            invited_by=by_account_id, expires_at=invitation.expires_at,
                            account_id=account_id)
        )
        return invitation

    def accept_invitation(
        self, *, invitation_id: str, token_hash: str, account_id: str, now: datetime
    ) -> GuardianRole:
        """Join with the invited role. Accepting again as the same guardian returns the role."""
        now = require_aware(now)
        invitation = self.invitations.get(invitation_id)
        if invitation is None or not hmac.compare_digest(invitation.token_hash, token_hash):
            current = self.role_of(account_id)
            if current is not None and invitation is None:
                return current
            raise AuthRejected(Reason.INVITATION_INVALID)
        if now >= invitation.expires_at:
            raise AuthRejected(Reason.INVITATION_EXPIRED)
        if account_id in self.guardians:
            raise AuthRejected(Reason.ALREADY_GUARDIAN)
        del self.invitations[invitation_id]
        self._add(account_id, invitation.role, ProofKind.INVITATION, now)
        return invitation.role

    def accept_addressed_invitation(self, *, invitation_id: str, account_id: str,
                                    now: datetime) -> GuardianRole:
        """The invitee accepts an invitation addressed to their account and joins with its
        role. Accepting again (the invitation is gone, the account guards the child) returns
        the role; an invitation addressed to someone else reads as missing."""
        now = require_aware(now)
        invitation = self.invitations.get(invitation_id)
        if invitation is None or invitation.account_id != account_id:
            current = self.role_of(account_id)
            if current is not None and invitation is None:
                return current
            raise AuthRejected(Reason.INVITATION_INVALID)
        if now >= invitation.expires_at:
            raise AuthRejected(Reason.INVITATION_EXPIRED)
        if account_id in self.guardians:
            raise AuthRejected(Reason.ALREADY_GUARDIAN)  # never a role changed by accepting
        del self.invitations[invitation_id]
        self._add(account_id, invitation.role, ProofKind.INVITATION, now)
        return invitation.role

    def open_invitations(self, now: datetime, *, for_account: str | None = None
                         ) -> list[Invitation]:
        """Invitations not yet accepted nor expired (addressed to ``for_account`` only, when
        given), oldest first."""
        now = require_aware(now)
        return sorted((i for i in self.invitations.values() if now < i.expires_at
                       and (for_account is None or i.account_id == for_account)),
                      key=lambda i: i.created_at)

    def guardians_for(self, account_id: str) -> list[tuple[str, GuardianRole]]:
        """The guardians and their roles, primary first, as a guardian sees them
        (``NOT_A_GUARDIAN`` for anyone else)."""
        if account_id not in self.guardians:
            raise AuthRejected(Reason.NOT_A_GUARDIAN)
        order = {GuardianRole.PRIMARY: 0, GuardianRole.CO_GUARDIAN: 1, GuardianRole.VIEWER: 2}
        return sorted(self.guardians.items(), key=lambda g: (order[g[1]], g[0]))

    def add_guardian(
        self, *, by_account_id: str, account_id: str, role: GuardianRole, invitation_id: str,
        token_hash: str, now: datetime,
    ) -> GuardianRole:
        """The primary adds an existing account with a role: the invitation is created and
        taken up in one step (the rules of :meth:`invite` and :meth:`accept_invitation`)."""
        invitation = self.invite(by_account_id=by_account_id, role=role,
                                 invitation_id=invitation_id, token_hash=token_hash, now=now)
        return self.accept_invitation(invitation_id=invitation.invitation_id,
                                      token_hash=invitation.token_hash, account_id=account_id,
                                      now=now)

    def revoke_invitation(self, *, by_account_id: str, invitation_id: str, now: datetime) -> bool:
        now = require_aware(now)
        self._require_primary(by_account_id)
        if self.invitations.pop(invitation_id, None) is None:
            return False
        self.pending_events.append(
            GuardianInvitationRevoked(occurred_at=now, child_id=self.child_id,
                                      invitation_id=invitation_id, revoked_by=by_account_id)
        )
        return True

    # --- changes ----------------------------------------------------------------------------

    def remove_guardian(self, *, by_account_id: str, account_id: str, now: datetime) -> bool:
        """The primary removes another guardian, or a guardian leaves by themselves. The
        primary cannot be removed this way (transfer first). Removing a non-guardian is a
        no-op returning False."""
        now = require_aware(now)
        if by_account_id != account_id:
            self._require_primary(by_account_id)
        role = self.guardians.get(account_id)
        if role is None:
            return False
        if role is GuardianRole.PRIMARY:
            raise AuthRejected(Reason.CANNOT_REMOVE_PRIMARY)
        del self.guardians[account_id]
        self.pending_events.append(
            GuardianRemoved(occurred_at=now, child_id=self.child_id,
                            contract_number=self.contract_number, account_id=account_id,
                            role=role.value, removed_by=by_account_id)
        )
        return True

    def change_role(
        self, *, by_account_id: str, account_id: str, role: GuardianRole, now: datetime
    ) -> bool:
        """The primary switches another guardian between co-guardian and viewer, or hands the
        primary role over (then becomes a co-guardian). Same role again is a no-op."""
        now = require_aware(now)
        self._require_primary(by_account_id)
        old = self.guardians.get(account_id)
        if old is None:
            raise AuthRejected(Reason.NOT_A_GUARDIAN)
        if old is role:
            return False
        if account_id == by_account_id:
            raise AuthRejected(Reason.CANNOT_REMOVE_PRIMARY, "hand over to someone else")
        if role is GuardianRole.PRIMARY:
            self._set_role(by_account_id, GuardianRole.CO_GUARDIAN, by_account_id, now)
        self._set_role(account_id, role, by_account_id, now)
        return True

    def _set_role(self, account_id: str, role: GuardianRole, by: str, now: datetime) -> None:
        old = self.guardians[account_id]
        self.guardians[account_id] = role
        self.pending_events.append(
            GuardianRoleChanged(occurred_at=now, child_id=self.child_id,
                                contract_number=self.contract_number, account_id=account_id,
                                old_role=old.value, new_role=role.value, changed_by=by)
        )

    def rename(self, *, by_account_id: str, display_name: str) -> bool:
        """The family's name for the child (spaces folded, at most 64 characters; empty
        clears it), set by the primary or a co-guardian (a viewer only reads it). False when
        unchanged."""
        role = self.guardians.get(by_account_id)
        if role is None:
            raise AuthRejected(Reason.NOT_A_GUARDIAN)
        if role is GuardianRole.VIEWER:
            raise AuthRejected(Reason.NOT_PERMITTED, "rename")
        name = " ".join(display_name.split())[:CHILD_NAME_MAX_LENGTH] or None
        if name == self.display_name:
            return False
        self.display_name = name
        return True

    def drop_closed_account(self, *, account_id: str, now: datetime) -> bool:
        """Remove a guardian whose account closed, whatever the role; a child left without a
        primary can be claimed again with proof."""
        now = require_aware(now)
        role = self.guardians.pop(account_id, None)
        if role is None:
            return False
        self.invitations = {k: v for k, v in self.invitations.items()
                            if v.invited_by != account_id}
        self.pending_events.append(
            GuardianRemoved(occurred_at=now, child_id=self.child_id,
                            contract_number=self.contract_number, account_id=account_id,
                            role=role.value, removed_by=account_id)
        )
        return True

    def reissue(self, *, new_contract_number: str, school_id: str, now: datetime,
                held_by: str | None = None) -> bool:
        """A new card (e.g. on school change): the child keeps guardians and history under the
        new contract. Replaying the same reissue is a no-op returning False. ``held_by``: the
        child that holds or held the new contract number, if any; another child's number is
        refused (contract numbers are never reused)."""
        now = require_aware(now)
        if held_by is not None and held_by != self.child_id:
            raise AuthRejected(Reason.CONTRACT_IN_USE, "another child holds the new contract")
        if new_contract_number == self.contract_number:
            if school_id == self.school_id:
                return False
            raise AuthRejected(Reason.SAME_CONTRACT)
        if new_contract_number in self.previous_contracts:
            raise AuthRejected(Reason.SAME_CONTRACT, "contract numbers are never reused")
        old = self.contract_number
        self.previous_contracts.append(old)
        self.contract_number = new_contract_number
        self.school_id = school_id
        self.pending_events.append(
            ContractReissued(occurred_at=now, child_id=self.child_id, old_contract_number=old,
                             new_contract_number=new_contract_number, school_id=school_id,
                             guardians=tuple(sorted((a, r.value)
                                                    for a, r in self.guardians.items())))
        )
        return True

    def pull_events(self) -> list[DomainEvent]:
        events, self.pending_events = self.pending_events, []
        return events

    # --- persistence ------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.child_id,
            "contract_number": self.contract_number,
            "school_id": self.school_id,
            "birth_date": date_to_doc(self.birth_date),
            "created_at": self.created_at,
            "previous_contracts": list(self.previous_contracts),
            "activation_code_mac": self.activation_code_mac,
            "guardians": [{"account_id": a, "role": r.value} for a, r in self.guardians.items()],
            "invitations": [i.to_doc() for i in self.invitations.values()],
            "proof_failures": self.proof_failures.to_doc(),
            "birth_date_failures": self.birth_date_failures,
            "display_name": self.display_name,
            "idempotency": self.idempotency.to_doc(),
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Child:
        return cls(
            child_id=str(doc["_id"]),
            contract_number=str(doc["contract_number"]),
            school_id=str(doc["school_id"]),
            birth_date=date_from_doc(doc["birth_date"]),
            created_at=dt_from_doc(doc["created_at"]),
            previous_contracts=[str(c) for c in doc.get("previous_contracts", [])],
            activation_code_mac=doc.get("activation_code_mac"),
            guardians={str(g["account_id"]): GuardianRole(g["role"])
                       for g in doc.get("guardians", [])},
            invitations={str(i["invitation_id"]): Invitation.from_doc(i)
                         for i in doc.get("invitations", [])},
            proof_failures=_proof_throttle().load(doc.get("proof_failures")),
            birth_date_failures=int(doc.get("birth_date_failures", 0)),
            display_name=doc.get("display_name"),
            idempotency=IdempotencyLog.from_doc(doc.get("idempotency")),
            version=int(doc["version"]),
        )


def child_to_link(child: Child | None) -> Child:
    """A contract that names no child is refused like a wrong proof (``CHILD_PROOF_INVALID``):
    a parent learns nothing about which contracts exist."""
    if child is None:
        raise AuthRejected(Reason.CHILD_PROOF_INVALID)
    return child


def guarded_child(child: Child | None) -> Child:
    """The child whose guardians a command changes; a contract that names no child is refused
    like one the caller is no guardian of (``NOT_A_GUARDIAN``)."""
    if child is None:
        raise AuthRejected(Reason.NOT_A_GUARDIAN)
    return child
