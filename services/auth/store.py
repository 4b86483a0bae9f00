"""The only module of auth that talks to MongoDB.

Collections (database ``schoolcard_auth``):

* ``auth_accounts`` — the Account aggregate (parents, staff, integrators) with an optimistic
  ``version``; unique phone, login contract and login name; e-mail indexed. Identifiers an
  account does not have are left out of the document, so the unique indexes (sparse) only see
  real values.
* ``auth_sessions`` — one document per session / refresh-token family; found by the hash of
  the current refresh token or of a rotated one (reuse detection).
* ``auth_children`` — children from the card-issuing system with their guardians; unique
  contract number, indexed by previous contracts, by guardian account (``guardian_ids``) and
  by the accounts its open invitations are addressed to (``invitee_ids``).
* ``auth_outbox`` / ``auth_inbox`` — the runtime's; the relay deletes published outbox records
  (``outbox_carries_secrets``), so codes do not outlive their delivery.
* ``auth_login_throttles`` — login throttles (per source, the ceiling, the lifetime count of a
  contract number) of identifiers that name no account (keyed by a peppered hash), so
  throttling looks the same for known and unknown identifiers.

Sessions and login throttles expire (TTL indexes on ``stored_at``, the wall-clock time of the
last write): ``AUTH_SESSION_RETENTION_DAYS`` after a session was last used or revoked (it is
unusable after 12 hours anyway), ``AUTH_LOGIN_THROTTLE_RETENTION_DAYS`` after the last failure.

Array fields are matched with ``dialect.has`` (``services/runtime/dialect.py``).

Each function works inside the handler's transaction (``Store.of(tx)``) or, for the
pre-reads done before slow password hashing, outside one (``Store(db)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import phonenumbers
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession

from services.auth.domain import Account, Child, LoginThrottle, Session
from services.runtime import dialect
from services.runtime.mongo import (
    DAY_S,
    STORED_AT,
    Transaction,
    ensure_ttl_index,
    save_versioned,
    with_stored_at,
)

Doc = dict[str, Any]
_IDENTIFIERS = ("phone", "email", "username", "login_contract")
_CONTRACT = re.compile(r"\d{8}")
# What a typed phone number is made of. Letters are not: phonenumbers reads them as a keypad's
# digits, which turned about 2 % of login names such as "staff-ed7789fa6ca7" into phones.
_PHONE_CHARS = re.compile(r"[+\d\s().-]+")


async def ensure_indexes(db: Any, *, session_retention_days: int,
                         login_throttle_retention_days: int) -> None:
    await dialect.current().create_indexes(db.auth_accounts, [
        IndexModel([("phone", ASCENDING)], unique=True, sparse=True, name="phone_unique"),
        IndexModel([("username", ASCENDING)], unique=True, sparse=True, name="username_unique"),
        IndexModel([("login_contract", ASCENDING)], unique=True, sparse=True,
                   name="login_contract_unique"),
        IndexModel([("email", ASCENDING)], sparse=True, name="email"),
    ])
    await dialect.current().create_indexes(db.auth_sessions, [
        IndexModel([("account_id", ASCENDING)]),
        IndexModel([("refresh_token_hash", ASCENDING)]),
        IndexModel([("rotated_token_hashes", ASCENDING)]),
        IndexModel([("live", ASCENDING), ("expires_ms", ASCENDING)]),
    ])
    await dialect.current().create_indexes(db.auth_children, [
        IndexModel([("contract_number", ASCENDING)], unique=True, name="contract_unique"),
        IndexModel([("previous_contracts", ASCENDING)]),
        IndexModel([("guardian_ids", ASCENDING)]),
        IndexModel([("invitee_ids", ASCENDING)]),
    ])
    await ensure_ttl_index(db.auth_sessions, STORED_AT, session_retention_days * DAY_S)
    await ensure_ttl_index(db.auth_login_throttles, STORED_AT,
                           login_throttle_retention_days * DAY_S)


def identify(login: str) -> tuple[str, str]:
    """Which account field a login string names: e-mail, contract number, phone or login
    name (the same parsing for every caller, known account or not)."""
    text = login.strip()
    if "@" in text:
        return "email", text.lower()
    if _CONTRACT.fullmatch(text):
        return "login_contract", text
    if not _PHONE_CHARS.fullmatch(text):
        return "username", text.lower()
    try:
        parsed = phonenumbers.parse(text, "RU")
        if phonenumbers.is_valid_number(parsed):
            return "phone", phonenumbers.format_number(parsed,
                                                       phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    return "username", text.lower()


@dataclass
class Store:
    db: Any
    session: AsyncClientSession | None = None

    @classmethod
    def of(cls, tx: Transaction) -> Store:
        return cls(tx.db, tx.session)

    # --- accounts ---------------------------------------------------------------------------

    async def account(self, account_id: str) -> Account | None:
        doc = await self.db.auth_accounts.find_one({"_id": account_id}, session=self.session)
        return Account.from_doc(doc) if doc else None

    async def account_by(self, field: str, value: str) -> Account | None:
        """The account a login identifier names; for e-mail, the active one first."""
        docs = await self.db.auth_accounts.find({field: value}, session=self.session) \
            .to_list(5)
        docs.sort(key=lambda d: d.get("status") != "active")
        return Account.from_doc(docs[0]) if docs else None

    async def account_by_phone(self, phone: str) -> Account | None:
        return await self.account_by("phone", phone)

    async def accounts(self, account_ids: list[str]) -> dict[str, Account]:
        docs = await self.db.auth_accounts.find({"_id": {"$in": account_ids}},
                                                session=self.session).to_list(None)
        return {str(d["_id"]): Account.from_doc(d) for d in docs}

    async def save_account(self, account: Account, expected_version: int | None) -> None:
        """Insert (``expected_version`` None) or replace if nobody wrote since the load."""
        account.version = 0 if expected_version is None else expected_version + 1
        doc = account.to_doc()
        for name in _IDENTIFIERS:
            if doc.get(name) is None:
                doc.pop(name, None)
        await self._put(self.db.auth_accounts, doc, expected_version)

    # --- sessions ---------------------------------------------------------------------------

    async def session_doc(self, session_id: str) -> Session | None:
        doc = await self.db.auth_sessions.find_one({"_id": session_id}, session=self.session)
        return Session.from_doc(doc) if doc else None

    async def session_by_refresh(self, token_hash: str) -> Session | None:
        doc = await self.db.auth_sessions.find_one(
            {"$or": [{"refresh_token_hash": token_hash},
                     dialect.current().has("rotated_token_hashes", token_hash)]},
            session=self.session)
        return Session.from_doc(doc) if doc else None

    async def sessions_of(self, account_id: str) -> list[Session]:
        docs = await self.db.auth_sessions.find({"account_id": account_id},
                                                session=self.session).to_list(None)
        return [Session.from_doc(d) for d in docs]

    async def expired_session_ids(self, now: datetime, limit: int) -> list[str]:
        """Sessions not ended whose refresh lifetime ran out by ``now`` (at most ``limit``):
        ``live`` and ``expires_ms`` are kept for this query alone (an epoch-millisecond
        instant: the dialect's range-safe time)."""
        docs = await self.db.auth_sessions.find(
            {"live": True, "expires_ms": {"$lte": dialect.current().instant(now)}},
            session=self.session).limit(limit).to_list(None)
        return [str(doc["_id"]) for doc in docs]

    async def save_session(self, session: Session, expected_version: int | None) -> None:
        session.version = 0 if expected_version is None else expected_version + 1
        doc = {**session.to_doc(), "live": session.revoked_at is None,
               "expires_ms": dialect.current().instant(session.idle_expires_at)}
        await self._put(self.db.auth_sessions, with_stored_at(doc),
                        expected_version)

    # --- children ---------------------------------------------------------------------------

    async def child(self, child_id: str) -> Child | None:
        doc = await self.db.auth_children.find_one({"_id": child_id}, session=self.session)
        return Child.from_doc(doc) if doc else None

    async def child_by_contract(self, contract: str, *, previous: bool = False) -> Child | None:
        query: Doc = ({"$or": [{"contract_number": contract},
                               dialect.current().has("previous_contracts", contract)]}
                      if previous else {"contract_number": contract})
        doc = await self.db.auth_children.find_one(query, session=self.session)
        return Child.from_doc(doc) if doc else None

    async def children_of(self, account_id: str) -> list[Child]:
        docs = await self.db.auth_children.find(
            dialect.current().has("guardian_ids", account_id), session=self.session
        ).to_list(None)
        return [Child.from_doc(d) for d in docs]

    async def children_inviting(self, account_id: str) -> list[Child]:
        """The children with an invitation addressed to ``account_id`` (open or expired)."""
        docs = await self.db.auth_children.find(
            dialect.current().has("invitee_ids", account_id), session=self.session
        ).to_list(None)
        return [Child.from_doc(d) for d in docs]

    async def save_child(self, child: Child, expected_version: int | None) -> None:
        child.version = 0 if expected_version is None else expected_version + 1
        doc = child.to_doc()
        # A flat, indexed list to query by (kept for the dev server, which does not match
        # fields inside arrays of sub-documents: see services/runtime/dialect.py).
        doc["guardian_ids"] = sorted(child.guardians)
        doc["invitee_ids"] = sorted({i.account_id for i in child.invitations.values()
                                     if i.account_id is not None})
        await self._put(self.db.auth_children, doc, expected_version)

    # --- throttles of unknown identifiers ---------------------------------------------------

    async def unknown_throttle(self, key: str) -> LoginThrottle:
        doc = await self.db.auth_login_throttles.find_one({"_id": key}, session=self.session)
        return LoginThrottle.from_doc(doc)

    async def save_unknown_throttle(self, key: str, throttle: LoginThrottle) -> None:
        await self.db.auth_login_throttles.replace_one(
            {"_id": key}, dialect.current().upsert_replacement(
                key, with_stored_at(throttle.to_doc())),
            upsert=True, session=self.session)

    # --- helpers ----------------------------------------------------------------------------

    async def _put(self, collection: Any, doc: Doc, expected_version: int | None) -> None:
        await save_versioned(collection, doc, expected_version, session=self.session)

