"""auth use cases, each of the runtime's one shape (``services/runtime/usecase.py``): load ->
one domain call -> save / emit / reply, state + outbox + inbox in one transaction; the reply
travels through the outbox too.

Every command that carries an access token is let in by :meth:`Handlers.signed_in`, first
thing in its case: the case verifies the token (and authorizes the action, when the command
names one), then the caller's account and session are loaded and must still be alive
(``d.require_live_session``). An access token lives 5 minutes; a logout, a password change, a
support reset or a closed account stops auth's own commands at once, whichever command it is.

Password hashing and verification (argon2id, ~50 ms and 19 MiB each) run in a worker thread
*before* the transaction, so transactions stay short: the handler pre-reads the account, does
the slow work, then the case opens at the time read before it (``now=``) and checks the hash
it verified is still the stored one (else ``ConcurrencyError``: the consumer reruns the
message). A token the case will refuse costs no argon2. Flows that may name an unknown phone
or login do the same work and give the same reply whether or not it exists.

Refusals are raised: an ``AuthRejected`` or a refused token becomes an ErrorReply with the
reason code and the public text of ``outbound.error_text`` (``outbound.explain``), or a dead
letter with the code for an integrator's event. A refusal that changes state (a failed
attempt counted, a refresh-token family revoked) is returned by the domain, saved, then
raised (``require_ok``): the case commits what the block saved before it. Input that can never
succeed, whoever sent it (a reissue of a contract auth never saw), is ``Rejected``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from contracts import auth as cmd
from contracts import integrations as inbound
from services.auth import domain as d
from services.auth import outbound, store
from services.auth.security import (
    ChildClaim,
    dummy_verify,
    hash_ip,
    hash_password,
    hash_token,
    new_id,
    new_otp_code,
    new_refresh_token,
    new_totp_secret,
    source_key,
    verify_password,
)
from services.auth.settings import Settings
from services.auth.store import Store
from services.runtime.consumer import Inbound, Rejected
from services.runtime.mongo import ConcurrencyError, Transaction
from services.runtime.service import Runtime
from services.runtime.tokens import TokenError
from services.runtime.usecase import Case, UseCases

RESEND_AFTER_S = int(d.CODE_RESEND_COOLDOWN.total_seconds())


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


async def _verify(password_hash: str | None, password: str) -> bool:
    """argon2 verification off the event loop; no hash costs the same as a wrong one."""
    if password_hash is None:
        await asyncio.to_thread(dummy_verify, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)


async def _nothing(value: Any) -> Any:
    return value


def _claims_for(account_id: str, children: list[d.Child]) -> list[ChildClaim]:
    return [c for c in (child.claim_for(account_id) for child in children) if c is not None]


@dataclass(frozen=True)
class Recheck:
    """The slow part of a command that re-checks the caller's password, done before its
    transaction: the hash it was checked against (the transaction requires it unchanged) and
    the results."""

    password_hash: str | None
    password_ok: bool = False
    new_matches_current: bool = False
    new_password_hash: str = ""
    code_word_hash: str | None = None
    code_word_read: bool = False
    proof: d.ReauthProof = field(default_factory=d.ReauthProof)


@dataclass
class SignedIn:
    """A token command inside its case: the unit of work, auth's store in it, the token's
    claims, and the live account and session they name."""

    uc: Case[Any]
    store: Store
    claims: cmd.AccessTokenClaims
    account: d.Account
    session: d.Session

    @property
    def tx(self) -> Transaction:
        return self.uc.tx


def _invitation(child: d.Child, i: d.Invitation, *,
                with_account: bool = True) -> cmd.InvitationInfo:
    return cmd.InvitationInfo(invitation_id=i.invitation_id, contract=child.contract_number,
                              role=i.role.value, expires_at=i.expires_at,
                              account_id=i.account_id if with_account else None)


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self.pepper = self.settings.pepper_bytes()
        self.private_key = self.settings.private_key.get_secret_value()
        self.reuse_grace = timedelta(seconds=self.settings.refresh_reuse_grace_s)
        self.countries = tuple(self.settings.phone_countries)
        self.case = UseCases(rt, refusals=(d.AuthRejected,), explain=outbound.explain)

    # --- the authenticated path ---------------------------------------------------------------

    async def signed_in(self, uc: Case[Any], recheck: Recheck | None = None) -> SignedIn:
        """The one way a command with an access token is let in, first thing in its case
        (after ``uc.authorize(action)`` for a command with an action): the account and
        session the token names are loaded and must be alive. With
        ``recheck``, the password hash verified before the transaction must still be the
        stored one. Its refusals are raised inside the case, which answers them."""
        claims = uc.holder
        s = Store.of(uc.tx)
        account, session = d.require_live_session(
            await s.account(claims.sub), await s.session_doc(claims.sid), uc.tx.now)
        if recheck is not None and (
                account.password_hash != recheck.password_hash
                or (recheck.code_word_read and account.code_word_hash != recheck.code_word_hash)):
            raise ConcurrencyError("the password changed while it was being verified")
        return SignedIn(uc, s, claims, account, session)

    async def _recheck(self, msg: Inbound[Any], password: str,
                       new_password: str | None = None) -> Recheck:
        """Before the transaction: the caller's password checked against the stored hash
        (and the new one compared with it and hashed); nothing for a token the case will
        refuse."""
        try:
            claims = self.rt.claims(msg)
        except TokenError:
            return Recheck(None)
        before = await Store(self.rt.db).account(claims.sub)
        verified = before.password_hash if before else None
        if new_password is None:
            return Recheck(verified, await _verify(verified, password))
        ok, same, new_hash = await asyncio.gather(
            _verify(verified, password), _verify(verified, new_password),
            asyncio.to_thread(hash_password, new_password))
        return Recheck(verified, ok, same, new_hash)

    async def _reauth(self, msg: Inbound[Any], reauth: cmd.Reauthentication | None,
                      hash_too: str = "") -> Recheck:
        """Before the transaction: the password and the code word a sensitive command brought
        (``reauth``) verified against the stored hashes (argon2, off the event loop), and
        ``hash_too`` hashed (a new code word); nothing for a token the case will refuse."""
        given = reauth or cmd.Reauthentication()
        password, word = _secret(given.password), _secret(given.code_word)
        try:
            claims = self.rt.claims(msg)
        except TokenError:
            return Recheck(None)
        before = await Store(self.rt.db).account(claims.sub)
        p_hash = before.password_hash if before else None
        w_hash = before.code_word_hash if before else None
        p_ok, w_ok, new_hash = await asyncio.gather(
            _verify(p_hash, password) if password else _nothing(False),
            _verify(w_hash, word) if word else _nothing(False),
            asyncio.to_thread(hash_password, hash_too) if hash_too else _nothing(""))
        return Recheck(p_hash, p_ok, new_password_hash=new_hash, code_word_hash=w_hash,
                       code_word_read=True,
                       proof=d.ReauthProof(password_given=bool(password), password_ok=p_ok,
                                           code_word_given=bool(word), code_word_ok=w_ok,
                                           totp=_secret(given.totp) or None))

    async def _reauthenticated(self, me: SignedIn, check: Recheck) -> None:
        """The gate of a sensitive command, after :meth:`signed_in`: the owner proved it is
        them again (``d.Account.reauthenticate``); a wrong proof is counted (saved) and
        raised."""
        outcome = me.account.reauthenticate(session=me.session, proof=check.proof,
                                            now=me.tx.now)
        await self._save_account(me.tx, me.store, me.account, me.account.version)
        outcome.require_ok()

    async def _hash_for(self, msg: Inbound[Any], action: str, password: str) -> str:
        """Before the transaction: the hash of a password a staff command sets; nothing for a
        token the case will refuse."""
        try:
            self.case.caller(msg).authorize(action)
        except TokenError:
            return ""
        return await asyncio.to_thread(hash_password, password)

    # --- plumbing -----------------------------------------------------------------------------

    def _emit(self, tx: Transaction, events: list[d.DomainEvent],
              account: d.Account | None = None) -> None:
        for topic, key, message, mid in outbound.to_wire(events, account):
            tx.emit(topic, key, message, message_id=mid)

    def _emit_codes(self, tx: Transaction, events: list[d.DomainEvent], *, code: str,
                    request_id: str, locale: str) -> None:
        for event in events:
            wired = outbound.code_request(event, code=code, request_id=request_id,
                                          locale=locale)
            if wired is not None:
                topic, key, message, mid = wired
                tx.emit(topic, key, message, message_id=mid)

    async def _save_account(self, tx: Transaction, s: Store, account: d.Account,
                            loaded: int | None) -> None:
        await s.save_account(account, loaded)
        self._emit(tx, account.pull_events(), account)

    async def _save_child(self, tx: Transaction, s: Store, child: d.Child,
                          loaded: int | None) -> None:
        await s.save_child(child, loaded)
        self._emit(tx, child.pull_events())

    async def _provisional_primary(self, s: Store, child: d.Child | None) -> d.Account | None:
        """The child's primary when it is a provisional contract login (no confirmed phone),
        which the activation code displaces; else None."""
        primary = await s.account(child.primary) if child is not None and child.primary else None
        return primary if primary is not None and primary.holds_contract_provisionally else None

    async def _close_displaced(self, tx: Transaction, s: Store, account: d.Account | None,
                               linked: d.LinkOutcome | None, child: d.Child) -> None:
        """Close the provisional contract login a link took the child from: its sessions
        end, its login by contract number is freed, and it leaves any other child too, as
        on a closure by its owner (``AccountClosed``, the contacts tombstone,
        ``GuardianRemoved``)."""
        if account is None or linked is None or linked.displaced != account.account_id:
            return
        loaded = account.version
        contacts = d.Account.from_doc(account.to_doc())  # for the contacts tombstone
        if account.give_way_to_activation_code(tx.now):
            await s.save_account(account, loaded)
            self._emit(tx, account.pull_events(), contacts)
            for other in await s.children_of(account.account_id):
                if other.child_id != child.child_id:
                    other_version = other.version
                    other.drop_closed_account(account_id=account.account_id, now=tx.now)
                    await self._save_child(tx, s, other, other_version)

    def _token(self, account: d.Account, session: d.Session, children: list[d.Child],
               now: datetime) -> str:
        """A signed access token; issuing it counts as activity on ``session``."""
        claims = account.login_claims(session=session,
                                      children=_claims_for(account.account_id, children),
                                      now=now)
        return outbound.access_token(self.private_key, claims, now)

    def _unknown_key(self, field: str, value: str) -> str:
        return hmac.new(self.pepper, f"login\x1f{field}\x1f{value}".encode(),
                        hashlib.sha256).hexdigest()

    # --- card issuance (integrator) -------------------------------------------------------------

    async def on_card_issued(self, msg: Inbound[inbound.CardIssued]) -> None:
        """A new child (and, for contracts whose initial password is the birth date, a parent
        login by contract number that must change it first). Idempotent per student."""
        card = msg.message
        now = self.rt.clock()
        initial = (await asyncio.to_thread(hash_password, card.birth_date.strftime("%d%m%Y"))
                   if card.initial_password_is_birth_date else None)
        async with self.case(msg, now=now) as uc:
            s = Store.of(uc.tx)
            if (await s.child(card.student_id) or await s.child_by_contract(card.contract,
                                                                           previous=True)):
                return  # registered by an earlier delivery of the same card
            issued = d.register_card(
                child_id=card.student_id, contract_number=card.contract,
                school_id=card.school_id, birth_date=card.birth_date,
                initial_password_hash=initial,
                account_id=outbound.new_account_id("contract", card.contract),
                pepper=self.pepper, now=now, activation_code_hash=card.activation_code_hash)
            if issued.account is not None:
                await self._save_account(uc.tx, s, issued.account, None)
            await self._save_child(uc.tx, s, issued.child, None)

    async def on_virtual_card_issued(self, msg: Inbound[inbound.VirtualCardIssued]) -> None:
        """A second credential (phone, watch, QR) of a contract auth already links: nothing of
        auth's changes; the inbox marks the message handled (every consumer of the topic
        answers for every type on it)."""
        async with self.case(msg):
            pass

    async def on_card_reissued(self, msg: Inbound[inbound.CardReissued]) -> None:
        """Relink: the child keeps guardians and history under the new contract. A reissue
        onto another child's contract is refused by the domain (dead-lettered with its
        code)."""
        card = msg.message
        async with self.case(msg) as uc:
            s = Store.of(uc.tx)
            child = await s.child_by_contract(card.old_contract, previous=True)
            if child is None:
                raise Rejected("unknown_contract", "no child holds the old contract")
            holder = await s.child_by_contract(card.new_contract, previous=True)
            loaded = child.version
            if child.reissue(new_contract_number=card.new_contract, school_id=card.school_id,
                             now=uc.tx.now, held_by=holder.child_id if holder else None):
                await self._save_child(uc.tx, s, child, loaded)

    # --- registration ---------------------------------------------------------------------------

    async def on_start_registration(self, msg: Inbound[cmd.StartRegistration]) -> None:
        """A repeat for a pending phone is compared with the pending password (one argon2
        verification for every phone, pending or not, so timing tells nothing)."""
        c = msg.message
        now = self.rt.clock()
        password = _secret(c.password)
        before = await Store(self.rt.db).account_by_phone(c.phone)
        pending_hash = (before.password_hash if before is not None
                        and before.status is d.AccountStatus.PENDING else None)
        password_hash, same = await asyncio.gather(
            asyncio.to_thread(hash_password, password), _verify(pending_hash, password))
        code = new_otp_code()
        async with self.case(msg, now=now) as uc:
            s = Store.of(uc.tx)
            existing = await s.account_by_phone(c.phone)
            if (existing is not None and existing.status is d.AccountStatus.PENDING
                    and existing.password_hash != pending_hash):
                raise ConcurrencyError("the pending password changed while it was compared")
            child = await s.child_by_contract(c.contract)
            link = d.registration_proof(
                child=child, contract_number=c.contract,
                birth_date=date.fromisoformat(c.birth_date) if c.birth_date else None,
                activation_code=_secret(c.activation_code) or None, pepper=self.pepper)
            result = d.start_registration(
                existing=existing, contract_known=child is not None,
                contract_birth_dates=[child.birth_date] if child else [],
                phone=c.phone, contract_number=c.contract, password=password,
                password_hash=password_hash, consent=c.consent,
                registration_id=c.request_id, new_account_id=outbound.new_account_id(),
                code_id=new_id(), code=code, pepper=self.pepper, now=now,
                email=c.email, locale=c.locale.value, served_countries=self.countries,
                same_password_as_pending=same, link=link)
            if result.account is not None:
                await s.save_account(result.account,
                                     existing.version if existing is not None else None)
                self._emit(uc.tx, result.events, result.account)  # the existing-account alert
                self._emit_codes(uc.tx, result.events, code=code, request_id=c.request_id,
                                 locale=c.locale.value)
            uc.tx.reply(cmd.RegistrationStarted(request_id=c.request_id,
                                                resend_after_s=RESEND_AFTER_S))

    async def on_confirm_registration(self, msg: Inbound[cmd.ConfirmRegistration]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            s = Store.of(uc.tx)
            account = await s.account_by_phone(c.phone)
            pending = account.pending_link if account is not None else None
            child = await s.child_by_contract(pending.contract_number) if pending else None
            child_version = child.version if child is not None else None
            provisional = await self._provisional_primary(s, child)
            outcome, linked = d.confirm_registration_and_link(
                account=account, child=child, code=_secret(c.code), pepper=self.pepper,
                now=uc.tx.now, idempotency_key=c.request_id,
                provisional=provisional.account_id if provisional else None)
            if account is not None:
                await self._save_account(uc.tx, s, account, account.version)
            if linked is not None and child is not None:
                await self._save_child(uc.tx, s, child, child_version)
                await self._close_displaced(uc.tx, s, provisional, linked, child)
            d.public_code_reply(outcome).require_ok()
            uc.tx.reply(cmd.CommandCompleted(
                request_id=c.request_id,
                child_linked=None if linked is None else linked.rejection is None))

    async def _code_checked(self, tx: Transaction, s: Store, account: d.Account | None,
                            outcome: d.Outcome, request_id: str) -> None:
        """Save what a code check did (failures count), then answer without telling an
        unknown phone from a wrong code."""
        if account is not None:
            await self._save_account(tx, s, account, account.version)
        d.public_code_reply(outcome).require_ok()
        tx.reply(cmd.CommandCompleted(request_id=request_id))

    async def on_resend_code(self, msg: Inbound[cmd.ResendCode]) -> None:
        c = msg.message
        if c.purpose == "password_reset":
            await self._send_reset_code(msg, c.request_id, c.phone)
            return
        code = new_otp_code()
        async with self.case(msg) as uc:
            s = Store.of(uc.tx)
            account = await s.account_by_phone(c.phone)
            result = d.resend_registration_code(
                account=account, registration_id=(account.pending_registration_id or "")
                if account else "", code_id=new_id(), code=code, pepper=self.pepper,
                now=uc.tx.now)
            await self._code_sent(uc.tx, s, result, account, code, c.request_id)

    async def _code_sent(self, tx: Transaction, s: Store, result: d.FlowResult,
                         account: d.Account | None, code: str, request_id: str) -> None:
        if result.account is not None and account is not None:
            await s.save_account(result.account, account.version)
            self._emit_codes(tx, result.events, code=code, request_id=request_id,
                             locale=account.locale)
        tx.reply(cmd.RegistrationStarted(request_id=request_id, resend_after_s=RESEND_AFTER_S))

    # --- password reset ---------------------------------------------------------------------------

    async def on_request_password_reset(self, msg: Inbound[cmd.RequestPasswordReset]) -> None:
        c = msg.message
        await self._send_reset_code(msg, c.request_id, c.phone)

    async def _send_reset_code(self, msg: Inbound[Any], request_id: str, phone: str) -> None:
        code = new_otp_code()
        async with self.case(msg) as uc:
            s = Store.of(uc.tx)
            account = await s.account_by_phone(phone)
            result = d.request_password_reset(account=account, request_id=request_id,
                                              code_id=new_id(), code=code, pepper=self.pepper,
                                              now=uc.tx.now, phone=phone,
                                              served_countries=self.countries)
            await self._code_sent(uc.tx, s, result, account, code, request_id)

    async def on_confirm_password_reset(self, msg: Inbound[cmd.ConfirmPasswordReset]) -> None:
        c = msg.message
        now = self.rt.clock()
        new_password = _secret(c.new_password)
        new_hash = await asyncio.to_thread(hash_password, new_password)  # known or not
        async with self.case(msg, now=now) as uc:
            s = Store.of(uc.tx)
            account = await s.account_by_phone(c.phone)
            children = await s.children_of(account.account_id) if account else []
            outcome = d.reset_password(
                account=account, code=_secret(c.code), pepper=self.pepper,
                new_password=new_password, new_password_hash=new_hash, now=now,
                birth_dates=[ch.birth_date for ch in children], idempotency_key=c.request_id)
            await self._code_checked(uc.tx, s, account, outcome, c.request_id)

    # --- login and sessions -------------------------------------------------------------------

    async def on_login(self, msg: Inbound[cmd.Login]) -> None:
        c = msg.message
        now = self.rt.clock()
        password = _secret(c.password)
        field, value = store.identify(c.login)
        unknown_key = self._unknown_key(field, value)
        source = source_key(self.pepper, c.device, c.ip)
        by_contract = field == "login_contract"
        presented_device = _secret(c.device_token) or None
        new_device_token = new_refresh_token()
        device = d.DeviceProof(presented_hash=hash_token(presented_device)
                               if presented_device else None,
                               new_device_id=outbound.new_device_id(),
                               new_token_hash=hash_token(new_device_token))
        before = await Store(self.rt.db).account_by(field, value)
        ghost = await Store(self.rt.db).unknown_throttle(unknown_key) if before is None else None
        refused = d.login_gate_for_identifier(before, ghost, now, source=source,
                                              by_contract=by_contract, device=device)
        # Throttled attempts cost no argon2; the others cost one, known account or not.
        verified_hash = before.password_hash if before is not None else None
        password_ok = refused is None and await _verify(verified_hash, password)
        async with self.case(msg, now=now) as uc:
            s = Store.of(uc.tx)
            account = await s.account_by(field, value)
            if account is not None and account.password_hash != verified_hash:
                raise ConcurrencyError("the password changed while it was being verified")
            throttle = await s.unknown_throttle(unknown_key) if account is None else None
            refresh = new_refresh_token()
            outcome = d.log_in(account=account, unknown_throttle=throttle,
                               password_ok=password_ok, now=now,
                               session_id=outbound.new_session_id(),
                               refresh_token_hash=hash_token(refresh), device=c.device,
                               ip_hash=hash_ip(self.pepper, c.ip),
                               totp_code=_secret(c.totp) or None, source=source,
                               by_contract=by_contract, device_proof=device)
            if throttle is not None:
                await s.save_unknown_throttle(unknown_key, throttle)
            if account is not None:
                await self._save_account(uc.tx, s, account, account.version)
            account, session = outcome.require_session()  # a refusal was counted above
            token = self._token(account, session, await s.children_of(account.account_id), now)
            await s.save_session(session, None)
            uc.tx.reply(outbound.session_tokens(
                c.request_id, access=token, refresh=refresh,
                must_change_password=outcome.reply.password_change_required,
                device_token=new_device_token if outcome.new_device else presented_device))

    async def on_refresh_session(self, msg: Inbound[cmd.RefreshSession]) -> None:
        c = msg.message
        presented = hash_token(_secret(c.refresh_token))
        refresh = new_refresh_token()
        async with self.case(msg) as uc:
            s = Store.of(uc.tx)
            session = await s.session_by_refresh(presented)
            account = await s.account(session.account_id) if session else None
            if session is None or account is None:
                raise d.AuthRejected(d.Reason.REFRESH_TOKEN_INVALID)
            loaded = session.version
            result = session.refresh(presented_token_hash=presented,
                                     new_token_hash=hash_token(refresh), now=uc.tx.now,
                                     account_epoch=account.session_epoch,
                                     idempotency_key=c.request_id, reuse_grace=self.reuse_grace)
            await s.save_session(session, loaded)
            self._emit(uc.tx, session.pull_events(), account)  # a reuse alerts the owner
            # Reuse outside the grace window revoked the family (saved above); retries inside
            # it are answered with a token rotated from the current one.
            result.require_ok()
            # The rotation set the session's last use to now: issuing the token (activity)
            # changes nothing more to save.
            token = self._token(account, session, await s.children_of(account.account_id),
                                uc.tx.now)
            uc.tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=refresh,
                                                must_change_password=session.password_change_only))

    async def on_logout(self, msg: Inbound[cmd.Logout]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            me.account.log_out(me.session, everywhere=c.everywhere, now=me.tx.now)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            await me.store.save_session(me.session, me.session.version)
            self._emit(me.tx, me.session.pull_events(), me.account)  # the session ended
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id))

    async def on_list_sessions(self, msg: Inbound[cmd.ListSessions]) -> None:
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            views = d.active_sessions(await me.store.sessions_of(me.account.account_id),
                                      me.tx.now, me.account.session_epoch,
                                      me.account.trusted_devices)
            me.tx.reply(outbound.sessions(views, current=me.claims.sid))

    async def on_end_session(self, msg: Inbound[cmd.EndSession]) -> None:
        """End one chosen session of the caller's (another device's, or this one); the
        others stay. Ending an ended one answers as done."""
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            target = (me.session if c.session_id == me.session.session_id
                      else await me.store.session_doc(c.session_id))
            loaded = target.version if target is not None else None
            if me.account.end_session(target, me.tx.now) and target is not None:
                await me.store.save_session(target, loaded)
                self._emit(me.tx, target.pull_events(), me.account)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id))

    # --- code word and phone ------------------------------------------------------------------

    async def on_set_code_word(self, msg: Inbound[cmd.SetCodeWord]) -> None:
        c = msg.message
        now = self.rt.clock()
        check = await self._reauth(msg, c.reauth, hash_too=_secret(c.code_word))
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            outcome = me.account.set_code_word(
                session=me.session, proof=check.proof, code_word=_secret(c.code_word),
                code_word_hash=check.new_password_hash, now=now)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    async def on_start_phone_change(self, msg: Inbound[cmd.StartPhoneChange]) -> None:
        """A code to the new phone (``notify.otp-requests.v1``, purpose
        phone_confirmation); replacing an existing phone re-authenticates first."""
        await self._start_contact_change(msg, lambda me, proof, code, now: (
            me.account.start_phone_change(session=me.session, proof=proof,
                                          phone=msg.message.phone, code_id=new_id(),
                                          code=code, pepper=self.pepper, now=now)))

    async def on_confirm_phone_change(self, msg: Inbound[cmd.ConfirmPhoneChange]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            holder = (await me.store.account_by_phone(me.account.pending_phone)
                      if me.account.pending_phone else None)
            outcome = me.account.confirm_phone_change(
                code=_secret(c.code), pepper=self.pepper, now=me.tx.now,
                phone_taken=holder is not None and holder.account_id != me.account.account_id,
                idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    async def on_start_email_change(self, msg: Inbound[cmd.StartEmailChange]) -> None:
        """A code to the new e-mail (``notify.otp-requests.v1``, purpose
        email_confirmation); replacing an existing e-mail re-authenticates first."""
        await self._start_contact_change(msg, lambda me, proof, code, now: (
            me.account.start_email_change(session=me.session, proof=proof,
                                          email=msg.message.email, code_id=new_id(),
                                          code=code, pepper=self.pepper, now=now)))

    async def _start_contact_change(
            self, msg: Inbound[Any],
            start: Callable[[SignedIn, d.ReauthProof, str, datetime], d.Outcome]) -> None:
        """The phone's and the e-mail's first step: re-authenticate when one is replaced,
        record the code, send it to the new address only."""
        c = msg.message
        now = self.rt.clock()
        check = await self._reauth(msg, c.reauth)
        code = new_otp_code()
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            outcome = start(me, check.proof, code, now)
            events = me.account.pull_events()
            await me.store.save_account(me.account, me.account.version)
            self._emit(me.tx, events, me.account)
            self._emit_codes(me.tx, events, code=code, request_id=c.request_id,
                             locale=me.account.locale)
            outcome.require_ok()
            me.tx.reply(cmd.RegistrationStarted(request_id=c.request_id,
                                                resend_after_s=RESEND_AFTER_S))

    async def on_confirm_email_change(self, msg: Inbound[cmd.ConfirmEmailChange]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            holder = (await me.store.account_by("email", me.account.pending_email)
                      if me.account.pending_email else None)
            outcome = me.account.confirm_email_change(
                code=_secret(c.code), pepper=self.pepper, now=me.tx.now,
                email_taken=holder is not None and holder.account_id != me.account.account_id
                and holder.status is not d.AccountStatus.CLOSED,
                idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    # --- profile --------------------------------------------------------------------------------

    async def on_update_profile(self, msg: Inbound[cmd.UpdateProfile]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            if me.account.update_profile(locale=c.locale.value if c.locale else None,
                                         time_zone=c.time_zone, now=me.tx.now):
                await self._save_account(me.tx, me.store, me.account, me.account.version)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    async def on_set_child_name(self, msg: Inbound[cmd.SetChildName]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            loaded = child.version
            if child.rename(by_account_id=me.account.account_id, display_name=c.display_name):
                await self._save_child(me.tx, me.store, child, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id))

    async def on_get_profile(self, msg: Inbound[cmd.GetProfile]) -> None:
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            a = me.account
            children = await me.store.children_of(a.account_id)
            me.tx.reply(cmd.ProfileReply(
                account_id=a.account_id, phone=a.phone, email=a.email, locale=a.locale,
                time_zone=a.time_zone, code_word_set=a.code_word_hash is not None,
                second_factor=a.totp_enabled,
                children=[cmd.ChildProfile(contract=ch.contract_number,
                                           role=ch.guardians[a.account_id].value,
                                           display_name=ch.display_name)
                          for ch in sorted(children, key=lambda ch: ch.contract_number)]))

    async def sweep_expired_sessions(self) -> None:
        """End the sessions whose refresh lifetime ran out (the tick of ``app``), one
        transaction each: ``Session.expire`` emits SessionEnded (reason expired) once, so a
        session swept twice (two instances, a rerun after a crash) is told once. A session
        refreshed meanwhile is alive again and stays (a version conflict retries next tick)."""
        now = self.rt.clock()
        for session_id in await Store(self.rt.db).expired_session_ids(
                now, self.settings.session_sweep_batch):
            async with self.rt.transaction() as tx:
                s = Store.of(tx)
                session = await s.session_doc(session_id)
                if session is None or not session.expire(tx.now):
                    continue
                await s.save_session(session, session.version)
                self._emit(tx, session.pull_events())

    # --- trusted devices ----------------------------------------------------------------------

    async def on_list_trusted_devices(self, msg: Inbound[cmd.ListTrustedDevices]) -> None:
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            me.tx.reply(outbound.trusted_devices(me.account.trusted_devices.listed()))

    async def on_rename_trusted_device(self, msg: Inbound[cmd.RenameTrustedDevice]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            me.account.trusted_devices.rename(c.device_id, c.name)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id))

    async def on_revoke_trusted_device(self, msg: Inbound[cmd.RevokeTrustedDevice]) -> None:
        """A retry of the same request (its request id) is answered again and ends nothing
        more; revoking a device that is no longer trusted (another request) answers
        device_not_found."""
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            sessions = await me.store.sessions_of(me.account.account_id)
            loaded = {s.session_id: s.version for s in sessions}
            for ended in me.account.revoke_trusted_device(c.device_id, sessions, me.tx.now,
                                                           idempotency_key=c.request_id):
                await me.store.save_session(ended, loaded[ended.session_id])
                self._emit(me.tx, ended.pull_events(), me.account)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id))

    async def on_get_login_history(self, msg: Inbound[cmd.GetLoginHistory]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            me.tx.reply(cmd.LoginHistoryReply(entries=[
                cmd.LoginRecord(at=r.at, device=r.device, success=r.success)
                for r in me.account.history()[: q.limit]]))

    # --- passwords ----------------------------------------------------------------------------

    async def on_change_password(self, msg: Inbound[cmd.ChangePassword]) -> None:
        c = msg.message
        now = self.rt.clock()
        new = _secret(c.new_password)
        check = await self._recheck(msg, _secret(c.current_password), new)
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            children = await me.store.children_of(me.account.account_id)
            outcome = me.account.change_password(
                current_password_ok=check.password_ok, new_password=new,
                new_password_hash=check.new_password_hash,
                new_password_matches_current=check.new_matches_current, session=me.session,
                now=now, birth_dates=[ch.birth_date for ch in children],
                idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()  # a wrong current password was counted (saved above)
            token = self._token(me.account, me.session, children, now)
            await me.store.save_session(me.session, me.session.version)
            me.tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=None))

    # --- second factor (TOTP) -----------------------------------------------------------------

    async def on_start_totp_enrolment(self, msg: Inbound[cmd.StartTotpEnrolment]) -> None:
        """Re-authenticate with the password, then keep a new candidate secret and send it to
        the owner in the reply; a wrong password counts as a failed login."""
        c = msg.message
        now = self.rt.clock()
        check = await self._recheck(msg, _secret(c.password))
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            outcome = me.account.begin_totp_enrolment(
                session=me.session, current_password_ok=check.password_ok,
                secret_b32=new_totp_secret(), now=now, idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()
            me.tx.reply(outbound.totp_enrolment(c.request_id, me.account))

    async def on_confirm_totp_enrolment(self, msg: Inbound[cmd.ConfirmTotpEnrolment]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            outcome = me.account.confirm_totp(session=me.session, code=_secret(c.code),
                                              now=me.tx.now, idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()  # a wrong code was counted (saved above)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    async def on_disable_totp(self, msg: Inbound[cmd.DisableTotp]) -> None:
        """Re-authenticate with the password and a current code, then switch the factor off;
        refusals are counted as failed logins."""
        c = msg.message
        now = self.rt.clock()
        check = await self._recheck(msg, _secret(c.password))
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            outcome = me.account.disable_totp(
                session=me.session, current_password_ok=check.password_ok,
                code=_secret(c.code) or None, now=now, idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, me.account, me.account.version)
            outcome.require_ok()
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=me.account.account_id))

    async def on_reset_second_factor(self, msg: Inbound[cmd.ResetSecondFactor]) -> None:
        """Support removes a parent's factor (identity checked outside the system); the domain
        records who and why, ends the parent's sessions and tells the parent."""
        c = msg.message
        async with self.case(msg) as uc:
            uc.authorize("reset_second_factor")
            me = await self.signed_in(uc)
            account = await me.store.account_by(*store.identify(c.login))
            if account is None:
                raise d.AuthRejected(d.Reason.ACCOUNT_NOT_FOUND)
            loaded = account.version
            account.reset_second_factor(by_account_id=me.account.account_id, reason=c.reason,
                                        now=me.tx.now, idempotency_key=c.request_id)
            await self._save_account(me.tx, me.store, account, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=account.account_id))

    async def on_unlock_account(self, msg: Inbound[cmd.UnlockAccount]) -> None:
        """Support clears the login throttles of the account a login names and, for a
        contract number, the proof budget of its child (identity checked outside the
        system); the domain records who and why."""
        c = msg.message
        async with self.case(msg) as uc:
            uc.authorize("unlock_account")
            me = await self.signed_in(uc)
            field, value = store.identify(c.login)
            account = await me.store.account_by(field, value)
            child = (await me.store.child_by_contract(value) if field == "login_contract"
                     else None)
            if account is None and child is None:
                raise d.AuthRejected(d.Reason.ACCOUNT_NOT_FOUND)
            if account is not None:
                loaded = account.version
                account.unlock(by_account_id=me.account.account_id, reason=c.reason,
                               now=me.tx.now, idempotency_key=c.request_id)
                await self._save_account(me.tx, me.store, account, loaded)
            if child is not None:
                child_version = child.version
                child.unlock_proofs(by_account_id=me.account.account_id, reason=c.reason,
                                    now=me.tx.now)
                await self._save_child(me.tx, me.store, child, child_version)
            me.tx.reply(cmd.CommandCompleted(
                request_id=c.request_id,
                account_id=account.account_id if account is not None else None))

    # --- guardians ----------------------------------------------------------------------------

    async def on_link_child(self, msg: Inbound[cmd.LinkChild]) -> None:
        """Link with proof; the reply carries a fresh access token that includes the child."""
        c = msg.message
        proof: d.ContractProof | d.ActivationCodeProof = (
            d.ContractProof(c.contract, date.fromisoformat(c.birth_date)) if c.birth_date
            else d.ActivationCodeProof(_secret(c.activation_code)))
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            child = d.child_to_link(await me.store.child_by_contract(c.contract))
            loaded = child.version
            provisional = await self._provisional_primary(me.store, child)
            outcome = child.link_with_proof(
                account_id=me.account.account_id, proof=proof, pepper=self.pepper,
                now=me.tx.now, idempotency_key=c.request_id,
                provisional=provisional.account_id if provisional else None)
            await self._save_child(me.tx, me.store, child, loaded)
            await self._close_displaced(me.tx, me.store, provisional, outcome, child)
            outcome.require_ok()  # a wrong proof was counted (saved above)
            others = await me.store.children_of(me.account.account_id)
            children = [child, *[ch for ch in others if ch.child_id != child.child_id]]
            token = self._token(me.account, me.session, children, me.tx.now)
            await me.store.save_session(me.session, me.session.version)
            me.tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=None))

    async def on_invite_guardian(self, msg: Inbound[cmd.InviteGuardian]) -> None:
        """The primary (re-authenticated) invites an existing parent account, found by
        phone, to a role; the invitee accepts (AcceptInvitation) or it lapses in 7 days."""
        c = msg.message
        now = self.rt.clock()
        check = await self._reauth(msg, c.reauth)
        async with self.case(msg, now=now) as uc:
            uc.authorize("manage_guardians", contract=c.contract)
            me = await self.signed_in(uc, check)
            await self._reauthenticated(me, check)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            invitee = d.invitee(await me.store.account_by_phone(c.phone))
            loaded = child.version
            invitation = child.invite(
                by_account_id=me.account.account_id, account_id=invitee.account_id,
                role=d.GuardianRole(c.role), invitation_id=f"inv_{c.request_id}"[:128],
                token_hash=hash_token(new_refresh_token()), now=me.tx.now)
            await self._save_child(me.tx, me.store, child, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=invitee.account_id,
                                             invitation_id=invitation.invitation_id))

    async def on_accept_invitation(self, msg: Inbound[cmd.AcceptInvitation]) -> None:
        """The invitee joins; the reply carries a fresh access token that includes the
        child."""
        c = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            loaded = child.version
            child.accept_addressed_invitation(invitation_id=c.invitation_id,
                                              account_id=me.account.account_id, now=me.tx.now)
            await self._save_child(me.tx, me.store, child, loaded)
            others = await me.store.children_of(me.account.account_id)
            children = [child, *[ch for ch in others if ch.child_id != child.child_id]]
            token = self._token(me.account, me.session, children, me.tx.now)
            await me.store.save_session(me.session, me.session.version)
            me.tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=None))

    async def on_revoke_invitation(self, msg: Inbound[cmd.RevokeInvitation]) -> None:
        c = msg.message
        async with self.case(msg) as uc:
            uc.authorize("manage_guardians", contract=c.contract)
            me = await self.signed_in(uc)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            loaded = child.version
            if child.revoke_invitation(by_account_id=me.account.account_id,
                                       invitation_id=c.invitation_id, now=me.tx.now):
                await self._save_child(me.tx, me.store, child, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             invitation_id=c.invitation_id))

    async def on_change_guardian_role(self, msg: Inbound[cmd.ChangeGuardianRole]) -> None:
        """A role switched, or "primary" handed over (the caller becomes a co-guardian)."""
        c = msg.message
        async with self.case(msg) as uc:
            uc.authorize("manage_guardians", contract=c.contract)
            me = await self.signed_in(uc)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            loaded = child.version
            if child.change_role(by_account_id=me.account.account_id,
                                 account_id=c.account_id, role=d.GuardianRole(c.role),
                                 now=me.tx.now):
                await self._save_child(me.tx, me.store, child, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id, account_id=c.account_id))

    async def on_list_guardians(self, msg: Inbound[cmd.ListGuardians]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            child = d.guarded_child(await me.store.child_by_contract(q.contract))
            guardians = child.guardians_for(me.account.account_id)
            accounts = await me.store.accounts([a for a, _ in guardians])
            mine = child.role_of(me.account.account_id) is d.GuardianRole.PRIMARY
            me.tx.reply(cmd.GuardiansReply(
                guardians=[cmd.GuardianInfo(
                    account_id=a, role=role.value,
                    phone_hint=d.phone_hint(accounts[a].phone if a in accounts else None),
                    you=a == me.account.account_id) for a, role in guardians],
                invitations=[_invitation(child, i) for i in child.open_invitations(me.tx.now)]
                if mine else []))

    async def on_list_invitations(self, msg: Inbound[cmd.ListInvitations]) -> None:
        async with self.case(msg) as uc:
            me = await self.signed_in(uc)
            me_id = me.account.account_id
            me.tx.reply(cmd.InvitationsReply(invitations=[
                _invitation(child, i, with_account=False)
                for child in await me.store.children_inviting(me_id)
                for i in child.open_invitations(me.tx.now, for_account=me_id)]))

    async def on_remove_guardian(self, msg: Inbound[cmd.RemoveGuardian]) -> None:
        """Re-authenticated: the primary removes a guardian, or a guardian leaves."""
        c = msg.message
        now = self.rt.clock()
        check = await self._reauth(msg, c.reauth)
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            await self._reauthenticated(me, check)
            child = d.guarded_child(await me.store.child_by_contract(c.contract))
            loaded = child.version
            if child.remove_guardian(by_account_id=me.account.account_id,
                                     account_id=c.account_id, now=me.tx.now):
                await self._save_child(me.tx, me.store, child, loaded)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id, account_id=c.account_id))

    # --- staff and closing --------------------------------------------------------------------

    async def on_create_staff_account(self, msg: Inbound[cmd.CreateStaffAccount]) -> None:
        c = msg.message
        now = self.rt.clock()
        password = _secret(c.password)
        password_hash = await self._hash_for(msg, "manage_staff", password)
        account_id = outbound.new_account_id("staff", c.request_id)
        field, value = store.identify(c.login)
        async with self.case(msg, now=now) as uc:
            uc.authorize("manage_staff")
            me = await self.signed_in(uc)
            s = me.store
            account = d.create_staff_account(
                already_created=await s.account(account_id) is not None,
                account_id=account_id, role=c.role, login=c.login, login_field=field,
                login_value=value, login_taken=await s.account_by(field, value) is not None,
                school_id=c.school_id, password=password, password_hash=password_hash,
                now=now, operator_id=c.operator_id)
            if account is not None:  # None: this request created it already
                await self._save_account(me.tx, s, account, None)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id, account_id=account_id))

    async def on_close_account(self, msg: Inbound[cmd.CloseAccount]) -> None:
        """Close: every session ends, personal data is minimised, guardianships end (a child
        left without a primary can be claimed again with proof)."""
        c = msg.message
        now = self.rt.clock()
        check = await self._reauth(msg, c.reauth)
        async with self.case(msg, now=now) as uc:
            me = await self.signed_in(uc, check)
            account, s = me.account, me.store
            loaded = account.version
            contacts = d.Account.from_doc(account.to_doc())  # for the contacts tombstone
            outcome = account.close_by_owner(session=me.session, proof=check.proof, now=now)
            if not outcome.ok:  # a wrong proof was counted: save it, then refuse
                await self._save_account(me.tx, s, account, loaded)
                outcome.require_ok()
            if account.status is d.AccountStatus.CLOSED:
                await s.save_account(account, loaded)
                self._emit(me.tx, account.pull_events(), contacts)
                for child in await s.children_of(account.account_id):
                    child_version = child.version
                    child.drop_closed_account(account_id=account.account_id, now=me.tx.now)
                    await self._save_child(me.tx, s, child, child_version)
            me.tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                             account_id=account.account_id))
