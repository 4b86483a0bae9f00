"""auth use cases: load -> one domain call -> commit (state + outbox + inbox) in one
transaction; the reply travels through the outbox too.

Password hashing and verification (argon2id, ~50 ms and 19 MiB each) run in a worker thread
*before* the transaction, so transactions stay short: the handler pre-reads the account, does
the slow work, then reloads inside the transaction and checks the hash it verified is still
the stored one (else the message is retried). Flows that may name an unknown phone or login do
the same work and give the same reply whether or not it exists.

Refusals the domain raises (``AuthRejected``) change nothing and are answered with an
ErrorReply carrying the reason code; refusals that change state (a failed attempt counted, a
refresh-token family revoked) are returned as results, persisted, then answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from typing import Any

from contracts import auth as cmd
from contracts import integrations as inbound
from contracts.envelope import ContractModel
from services.auth import domain as d
from services.auth import outbound, store
from services.auth.domain.guardians import Invitation
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
    verify_password,
)
from services.auth.settings import Settings
from services.auth.store import Store
from services.runtime.consumer import Inbound, Rejected
from services.runtime.mongo import ConcurrencyError, Transaction
from services.runtime.service import Runtime
from services.runtime.tokens import TokenError

RESEND_AFTER_S = int(d.CODE_RESEND_COOLDOWN.total_seconds())


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


async def _verify(password_hash: str | None, password: str) -> bool:
    """argon2 verification off the event loop; no hash costs the same as a wrong one."""
    if password_hash is None:
        await asyncio.to_thread(dummy_verify, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)


def _claims_for(account_id: str, children: list[d.Child]) -> list[ChildClaim]:
    return [c for c in (child.claim_for(account_id) for child in children) if c is not None]


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self.pepper = self.settings.pepper_bytes()
        self.private_key = self.settings.private_key.get_secret_value()
        self.reuse_grace = timedelta(seconds=self.settings.refresh_reuse_grace_s)

    # --- plumbing -----------------------------------------------------------------------------

    @asynccontextmanager
    async def _tx(self, msg: Inbound, now: datetime) -> AsyncIterator[Transaction]:
        """The unit of work of ``msg`` at ``now`` (read once per message, so the slow work
        done before the transaction and the transaction agree on the time)."""
        async with self.rt.uow.transaction(inbox_id=msg.inbox_id, cause=msg.envelope,
                                           now=now) as tx:
            yield tx

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

    @staticmethod
    def _refuse(tx: Transaction, reason: d.Reason, retry_after: Any = None) -> None:
        tx.fail(reason.value, outbound.error_text(reason, retry_after))

    async def _caller_and_hash(self, msg: Inbound, now: datetime
                               ) -> tuple[cmd.AccessTokenClaims, str | None] | None:
        """Before a password is re-checked (argon2, off the loop and outside the transaction):
        the token's holder and the password hash it is checked against; None when the token
        was refused (the error reply is sent). The transaction then checks the hash is still
        the same (else ConcurrencyError: the consumer reruns the message)."""
        try:
            claims = self.rt.claims(msg)
        except TokenError as exc:
            await self._fail_only(msg, now, exc.code, str(exc))
            return None
        before = await Store(self.rt.db).account(claims.sub)
        return claims, before.password_hash if before else None

    async def _fail_only(self, msg: Inbound, now: datetime, code: str, text: str) -> None:
        async with self._tx(msg, now) as tx:
            tx.fail(code, text)

    def _claims(self, msg: Inbound, action: str | None = None,
                contract: str | None = None) -> cmd.AccessTokenClaims:
        return (self.rt.authorize(msg, action, contract) if action
                else self.rt.claims(msg))

    async def _session_of(self, s: Store, claims: cmd.AccessTokenClaims, now: datetime,
                          ) -> tuple[d.Account, d.Session]:
        """The caller's account and session (the token is valid for 5 minutes; a session
        ended meanwhile must stop auth's own commands at once)."""
        account = await s.account(claims.sub)
        session = await s.session_doc(claims.sid)
        if account is None or session is None or session.account_id != account.account_id:
            raise d.AuthRejected(d.Reason.SESSION_NOT_FOUND)
        session.require_active(now, account.session_epoch)
        return account, session

    def _token(self, account: d.Account, session: d.Session, children: list[d.Child],
               now: datetime) -> str:
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
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            if (await s.child(card.student_id) or await s.child_by_contract(card.contract,
                                                                           previous=True)):
                return
            child = d.Child.register(child_id=card.student_id, contract_number=card.contract,
                                     school_id=card.school_id, birth_date=card.birth_date,
                                     now=now)
            if initial is not None:
                account = d.Account.provision_for_contract(
                    account_id=outbound.new_account_id("contract", card.contract),
                    contract_number=card.contract, initial_password_hash=initial, now=now)
                child.link_with_proof(account_id=account.account_id,
                                      proof=d.ContractProof(card.contract, card.birth_date),
                                      pepper=self.pepper, now=now)
                await s.save_account(account, None)
                account.pull_events()
            await s.save_child(child, None)
            self._emit(tx, child.pull_events())

    async def on_card_reissued(self, msg: Inbound[inbound.CardReissued]) -> None:
        """Relink: the child keeps guardians and history under the new contract."""
        card = msg.message
        now = self.rt.clock()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            child = await s.child_by_contract(card.old_contract, previous=True)
            if child is None:
                raise Rejected("unknown_contract", "no child holds the old contract")
            holder = await s.child_by_contract(card.new_contract, previous=True)
            loaded = child.version
            try:
                changed = child.reissue(new_contract_number=card.new_contract,
                                        school_id=card.school_id, now=now,
                                        held_by=holder.child_id if holder else None)
            except d.AuthRejected as exc:
                raise Rejected(exc.reason.value, "the reissue conflicts with earlier ones") \
                    from None
            if changed:
                await s.save_child(child, loaded)
                self._emit(tx, child.pull_events())

    # --- registration ---------------------------------------------------------------------------

    async def on_start_registration(self, msg: Inbound[cmd.StartRegistration]) -> None:
        c = msg.message
        now = self.rt.clock()
        password = _secret(c.password)
        password_hash = await asyncio.to_thread(hash_password, password)  # known or not
        code = new_otp_code()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            existing = await s.account_by_phone(c.phone)
            child = await s.child_by_contract(c.contract)
            try:
                result = d.start_registration(
                    existing=existing, contract_known=child is not None,
                    contract_birth_dates=[child.birth_date] if child else [],
                    phone=c.phone, contract_number=c.contract, password=password,
                    password_hash=password_hash, consent=c.consent,
                    registration_id=c.request_id, new_account_id=outbound.new_account_id(),
                    code_id=new_id(), code=code, pepper=self.pepper, now=now,
                    email=c.email, locale=c.locale.value)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason)
                return
            if result.account is not None:
                await s.save_account(result.account,
                                     existing.version if existing is not None else None)
                self._emit(tx, result.events, result.account)  # the existing-account alert
                self._emit_codes(tx, result.events, code=code, request_id=c.request_id,
                                 locale=c.locale.value)
            tx.reply(cmd.RegistrationStarted(request_id=c.request_id,
                                             resend_after_s=RESEND_AFTER_S))

    async def on_confirm_registration(self, msg: Inbound[cmd.ConfirmRegistration]) -> None:
        c = msg.message
        now = self.rt.clock()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            account = await s.account_by_phone(c.phone)
            outcome = d.confirm_registration(
                account=account, registration_id=(account.pending_registration_id or "")
                if account else "", code=_secret(c.code), pepper=self.pepper, now=now,
                idempotency_key=c.request_id)
            await self._code_confirmed(tx, s, account, outcome, c.request_id)

    async def _code_confirmed(self, tx: Transaction, s: Store, account: d.Account | None,
                              outcome: Any, request_id: str) -> None:
        """Save what a code check did (failures count), answer without telling an unknown
        phone from a wrong code."""
        if account is not None:
            await s.save_account(account, account.version)
            self._emit(tx, account.pull_events(), account)
        public = d.public_code_reply(outcome)
        if public.rejection is not None:
            self._refuse(tx, public.rejection)
            return
        tx.reply(cmd.CommandCompleted(request_id=request_id))

    async def on_resend_code(self, msg: Inbound[cmd.ResendCode]) -> None:
        c = msg.message
        if c.purpose == "password_reset":
            await self._send_reset_code(msg, c.request_id, c.phone)
            return
        now = self.rt.clock()
        code = new_otp_code()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            account = await s.account_by_phone(c.phone)
            result = d.resend_registration_code(
                account=account, registration_id=(account.pending_registration_id or "")
                if account else "", code_id=new_id(), code=code, pepper=self.pepper, now=now)
            await self._code_sent(tx, s, result, account, code, c.request_id)

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

    async def _send_reset_code(self, msg: Inbound, request_id: str, phone: str) -> None:
        now = self.rt.clock()
        code = new_otp_code()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            account = await s.account_by_phone(phone)
            result = d.request_password_reset(account=account, request_id=request_id,
                                              code_id=new_id(), code=code, pepper=self.pepper,
                                              now=now)
            await self._code_sent(tx, s, result, account, code, request_id)

    async def on_confirm_password_reset(self, msg: Inbound[cmd.ConfirmPasswordReset]) -> None:
        c = msg.message
        now = self.rt.clock()
        new_password = _secret(c.new_password)
        new_hash = await asyncio.to_thread(hash_password, new_password)  # known or not
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            account = await s.account_by_phone(c.phone)
            children = await s.children_of(account.account_id) if account else []
            try:
                outcome = d.reset_password(
                    account=account, code=_secret(c.code), pepper=self.pepper,
                    new_password=new_password, new_password_hash=new_hash, now=now,
                    birth_dates=[ch.birth_date for ch in children],
                    idempotency_key=c.request_id)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason)
                return
            await self._code_confirmed(tx, s, account, outcome, c.request_id)

    # --- login and sessions -------------------------------------------------------------------

    async def on_login(self, msg: Inbound[cmd.Login]) -> None:
        c = msg.message
        now = self.rt.clock()
        password = _secret(c.password)
        field, value = store.identify(c.login)
        unknown_key = self._unknown_key(field, value)
        before = await Store(self.rt.db).account_by(field, value)
        ghost = await Store(self.rt.db).unknown_throttle(unknown_key) if before is None else None
        refused = d.login_gate_for_identifier(before, ghost, now)
        # Throttled attempts cost no argon2; the others cost one, known account or not.
        verified_hash = before.password_hash if before is not None else None
        password_ok = refused is None and await _verify(verified_hash, password)
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
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
                               totp_code=_secret(c.totp) or None)
            reply = outcome.reply
            if outcome.session is None or account is None:
                if throttle is not None:
                    await s.save_unknown_throttle(unknown_key, throttle)
                if account is not None:
                    await s.save_account(account, account.version)
                self._refuse(tx, reply.reason or d.Reason.INVALID_CREDENTIALS, reply.retry_after)
                return
            children = await s.children_of(account.account_id)
            try:
                token = self._token(account, outcome.session, children, now)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason)
                return
            await s.save_account(account, account.version)
            await s.save_session(outcome.session, None)
            self._emit(tx, account.pull_events(), account)
            tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=refresh,
                                             must_change_password=reply.password_change_required))

    async def on_refresh_session(self, msg: Inbound[cmd.RefreshSession]) -> None:
        c = msg.message
        now = self.rt.clock()
        presented = hash_token(_secret(c.refresh_token))
        refresh = new_refresh_token()
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            session = await s.session_by_refresh(presented)
            account = await s.account(session.account_id) if session else None
            if session is None or account is None:
                self._refuse(tx, d.Reason.REFRESH_TOKEN_INVALID)
                return
            loaded = session.version
            try:
                result = session.refresh(presented_token_hash=presented,
                                         new_token_hash=hash_token(refresh), now=now,
                                         account_epoch=account.session_epoch,
                                         idempotency_key=c.request_id,
                                         reuse_grace=self.reuse_grace)
                token = (None if result.rejection or result.replayed else
                         self._token(account, session, await s.children_of(account.account_id),
                                     now))
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason)
                return
            await s.save_session(session, loaded)
            self._emit(tx, session.pull_events(), account)  # a reuse alerts the owner
            if token is None:
                # Reuse outside the grace window revoked the family (retries inside it were
                # answered above with a token rotated from the current one).
                self._refuse(tx, result.rejection or d.Reason.REFRESH_TOKEN_INVALID)
                return
            tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=refresh,
                                             must_change_password=session.password_change_only))

    async def on_logout(self, msg: Inbound[cmd.Logout]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._logout)

    async def _logout(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                      c: cmd.Logout) -> cmd.CommandCompleted:
        account, session = await self._session_of(s, claims, tx.now)
        account_version, session_version = account.version, session.version
        if c.everywhere:
            account.log_out_everywhere(tx.now)
            await s.save_account(account, account_version)
        else:
            session.revoke(tx.now, "logout")
            await s.save_session(session, session_version)
        return cmd.CommandCompleted(request_id=c.request_id)

    async def on_list_sessions(self, msg: Inbound) -> None:
        await self._authenticated(msg, None, self._list_sessions)

    async def _list_sessions(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                             _: Any) -> cmd.SessionsReply:
        account, _session = await self._session_of(s, claims, tx.now)
        views = d.active_sessions(await s.sessions_of(account.account_id), tx.now,
                                  account.session_epoch)
        return cmd.SessionsReply(sessions=[
            cmd.SessionInfo(session_id=v.session_id, device=v.device, started_at=v.created_at,
                            last_seen_at=v.last_used_at, current=v.session_id == claims.sid)
            for v in views])

    async def on_get_login_history(self, msg: Inbound) -> None:
        await self._authenticated(msg, None, self._login_history)

    async def _login_history(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                             q: cmd.GetLoginHistory) -> cmd.LoginHistoryReply:
        account, _session = await self._session_of(s, claims, tx.now)
        return cmd.LoginHistoryReply(entries=[
            cmd.LoginRecord(at=r.at, device=r.device, success=r.success)
            for r in account.history()[: q.limit]])

    async def _authenticated(self, msg: Inbound, _request_id: str | None, run: Any,
                             action: str | None = None, contract: str | None = None) -> None:
        """Verify the token, run ``run(tx, store, claims, message)`` in a transaction and reply
        with what it returns; domain refusals and token errors become an ErrorReply."""
        now = self.rt.clock()
        try:
            claims = self._claims(msg, action, contract)
        except TokenError as exc:
            await self._fail_only(msg, now, exc.code, str(exc))
            return
        async with self._tx(msg, now) as tx:
            try:
                reply = await run(tx, Store.of(tx), claims, msg.message)
            except _Answered:
                return
            except d.AuthRejected as exc:
                # Nothing was saved before the refusal, so the transaction only carries the
                # inbox marker and the error reply.
                self._refuse(tx, exc.reason, exc.retry_after)
                return
            tx.reply(reply)

    # --- passwords ----------------------------------------------------------------------------

    async def on_change_password(self, msg: Inbound[cmd.ChangePassword]) -> None:
        c = msg.message
        now = self.rt.clock()
        caller = await self._caller_and_hash(msg, now)
        if caller is None:
            return
        claims, verified_hash = caller
        current, new = _secret(c.current_password), _secret(c.new_password)
        current_ok, same, new_hash = await asyncio.gather(
            _verify(verified_hash, current), _verify(verified_hash, new),
            asyncio.to_thread(hash_password, new))
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            try:
                account, session = await self._session_of(s, claims, now)
                if account.password_hash != verified_hash:
                    raise ConcurrencyError("the password changed while it was being verified")
                loaded = (account.version, session.version)
                children = await s.children_of(account.account_id)
                outcome = account.change_password(
                    current_password_ok=current_ok, new_password=new, new_password_hash=new_hash,
                    new_password_matches_current=same, session=session, now=now,
                    birth_dates=[ch.birth_date for ch in children],
                    idempotency_key=c.request_id)
                token = self._token(account, session, children, now) if outcome.ok else None
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason, exc.retry_after)
                return
            await s.save_account(account, loaded[0])
            await s.save_session(session, loaded[1])
            self._emit(tx, account.pull_events(), account)
            if token is None:
                self._refuse(tx, outcome.rejection or d.Reason.INVALID_CREDENTIALS,
                             outcome.retry_after)
                return
            tx.reply(outbound.session_tokens(c.request_id, access=token, refresh=None))

    # --- second factor (TOTP) -----------------------------------------------------------------

    async def on_start_totp_enrolment(self, msg: Inbound[cmd.StartTotpEnrolment]) -> None:
        """Re-authenticate with the password, then keep a new candidate secret and send it to
        the owner in the reply."""
        c = msg.message
        await self._with_password(
            msg, c.password,
            lambda account, session, ok, now: account.begin_totp_enrolment(
                session=session, current_password_ok=ok, secret_b32=new_totp_secret(),
                now=now, idempotency_key=c.request_id),
            lambda account: outbound.totp_enrolment(c.request_id, account))

    async def on_confirm_totp_enrolment(self, msg: Inbound[cmd.ConfirmTotpEnrolment]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._confirm_totp)

    async def _confirm_totp(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                            c: cmd.ConfirmTotpEnrolment) -> cmd.CommandCompleted:
        account, session = await self._session_of(s, claims, tx.now)
        loaded = account.version
        outcome = account.confirm_totp(session=session, code=_secret(c.code), now=tx.now,
                                       idempotency_key=c.request_id)
        await s.save_account(account, loaded)
        self._emit(tx, account.pull_events(), account)
        if outcome.rejection is not None:
            # The wrong code is counted (saved above); the refusal goes back as an error.
            self._refuse(tx, outcome.rejection, outcome.retry_after)
            raise _Answered
        return cmd.CommandCompleted(request_id=c.request_id, account_id=account.account_id)

    async def on_disable_totp(self, msg: Inbound[cmd.DisableTotp]) -> None:
        """Re-authenticate with the password and a current code, then switch the factor off;
        refusals are counted as failed logins."""
        c = msg.message
        await self._with_password(
            msg, c.password,
            lambda account, session, ok, now: account.disable_totp(
                session=session, current_password_ok=ok, code=_secret(c.code) or None,
                now=now, idempotency_key=c.request_id),
            lambda account: cmd.CommandCompleted(request_id=c.request_id,
                                                 account_id=account.account_id))

    async def _with_password(self, msg: Inbound, password: Any,
                             act: Callable[[d.Account, Any, bool, datetime], Any],
                             reply: Callable[[d.Account], ContractModel]) -> None:
        """A second-factor change re-checks the password (argon2 off the loop and outside the
        transaction, like ChangePassword), then makes one domain call on the caller's account
        and session; a refusal is saved (it counts as a failed login) and answered."""
        now = self.rt.clock()
        caller = await self._caller_and_hash(msg, now)
        if caller is None:
            return
        claims, verified_hash = caller
        password_ok = await _verify(verified_hash, _secret(password))
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            try:
                account, session = await self._session_of(s, claims, now)
                if account.password_hash != verified_hash:
                    raise ConcurrencyError("the password changed while it was being verified")
                loaded = account.version
                outcome = act(account, session, password_ok, now)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason, exc.retry_after)
                return
            await s.save_account(account, loaded)
            self._emit(tx, account.pull_events(), account)
            if outcome.rejection is not None:
                self._refuse(tx, outcome.rejection, outcome.retry_after)
                return
            tx.reply(reply(account))

    async def on_reset_second_factor(self, msg: Inbound[cmd.ResetSecondFactor]) -> None:
        """Support removes a parent's factor (identity checked outside the system); the domain
        records who and why, ends the parent's sessions and tells the parent."""
        c = msg.message
        now = self.rt.clock()
        try:
            claims = self.rt.authorize(msg, "reset_second_factor")
        except TokenError as exc:
            await self._fail_only(msg, now, exc.code, str(exc))
            return
        field, value = store.identify(c.login)
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            account = await s.account_by(field, value)
            try:
                if account is None:
                    raise d.AuthRejected(d.Reason.ACCOUNT_NOT_FOUND)
                loaded = account.version
                account.reset_second_factor(by_account_id=claims.sub, reason=c.reason, now=now,
                                            idempotency_key=c.request_id)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason, exc.retry_after)
                return
            await s.save_account(account, loaded)
            self._emit(tx, account.pull_events(), account)
            tx.reply(cmd.CommandCompleted(request_id=c.request_id,
                                          account_id=account.account_id))

    # --- guardians ----------------------------------------------------------------------------

    async def on_link_child(self, msg: Inbound[cmd.LinkChild]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._link_child)

    async def _link_child(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                          c: cmd.LinkChild) -> cmd.SessionTokens:
        """Link with proof; the reply carries a fresh access token that includes the child."""
        account, session = await self._session_of(s, claims, tx.now)
        proof: d.ContractProof | d.ActivationCodeProof = (
            d.ContractProof(c.contract, date.fromisoformat(c.birth_date)) if c.birth_date
            else d.ActivationCodeProof(_secret(c.activation_code)))
        child = await s.child_by_contract(c.contract)
        if child is None:  # the same answer as a wrong proof
            raise d.AuthRejected(d.Reason.CHILD_PROOF_INVALID)
        loaded = child.version
        outcome = child.link_with_proof(account_id=account.account_id, proof=proof,
                                        pepper=self.pepper, now=tx.now,
                                        idempotency_key=c.request_id)
        await s.save_child(child, loaded)
        self._emit(tx, child.pull_events())
        if outcome.rejection is not None:
            # The failed proof is counted (saved above); the refusal goes back as an error.
            tx.fail(outcome.rejection.value, outbound.error_text(outcome.rejection))
            raise _Answered
        children = await s.children_of(account.account_id)
        children = [child, *[ch for ch in children if ch.child_id != child.child_id]]
        session_version = session.version
        token = self._token(account, session, children, tx.now)
        await s.save_session(session, session_version)
        return outbound.session_tokens(c.request_id, access=token, refresh=None)

    async def on_invite_guardian(self, msg: Inbound[cmd.InviteGuardian]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._invite, "manage_guardians",
                                  c.contract)

    async def _invite(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                      c: cmd.InviteGuardian) -> cmd.CommandCompleted:
        """The primary adds an existing parent account (found by phone) with a role; the
        invitation is created and taken up in one step."""
        child = await s.child_by_contract(c.contract)
        invitee = await s.account_by_phone(c.phone)
        if child is None:
            raise d.AuthRejected(d.Reason.NOT_A_GUARDIAN)
        if invitee is None or invitee.status is not d.AccountStatus.ACTIVE:
            raise d.AuthRejected(d.Reason.INVITATION_INVALID, "no active account for this phone")
        loaded = child.version
        token = new_refresh_token()
        invitation: Invitation = child.invite(
            by_account_id=claims.sub, role=d.GuardianRole(c.role),
            invitation_id=f"inv_{c.request_id}"[:128], token_hash=hash_token(token), now=tx.now)
        child.accept_invitation(invitation_id=invitation.invitation_id,
                                token_hash=invitation.token_hash,
                                account_id=invitee.account_id, now=tx.now)
        await s.save_child(child, loaded)
        self._emit(tx, child.pull_events())
        return cmd.CommandCompleted(request_id=c.request_id, account_id=invitee.account_id)

    async def on_remove_guardian(self, msg: Inbound[cmd.RemoveGuardian]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._remove_guardian)

    async def _remove_guardian(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                               c: cmd.RemoveGuardian) -> cmd.CommandCompleted:
        child = await s.child_by_contract(c.contract)
        if child is None:
            raise d.AuthRejected(d.Reason.NOT_A_GUARDIAN)
        loaded = child.version
        if child.remove_guardian(by_account_id=claims.sub, account_id=c.account_id, now=tx.now):
            await s.save_child(child, loaded)
            self._emit(tx, child.pull_events())
        return cmd.CommandCompleted(request_id=c.request_id, account_id=c.account_id)

    # --- staff and closing --------------------------------------------------------------------

    async def on_create_staff_account(self, msg: Inbound[cmd.CreateStaffAccount]) -> None:
        c = msg.message
        now = self.rt.clock()
        try:
            self.rt.authorize(msg, "manage_staff")
        except TokenError as exc:
            await self._fail_only(msg, now, exc.code, str(exc))
            return
        password = _secret(c.password)
        password_hash = await asyncio.to_thread(hash_password, password)
        account_id = outbound.new_account_id("staff", c.request_id)
        field, value = store.identify(c.login)
        async with self._tx(msg, now) as tx:
            s = Store.of(tx)
            try:
                account = d.create_staff_account(
                    already_created=await s.account(account_id) is not None,
                    account_id=account_id, role=c.role, login=c.login, login_field=field,
                    login_value=value, login_taken=await s.account_by(field, value) is not None,
                    school_id=c.school_id, password=password, password_hash=password_hash,
                    now=now)
            except d.AuthRejected as exc:
                self._refuse(tx, exc.reason)
                return
            if account is not None:
                await s.save_account(account, None)
                self._emit(tx, account.pull_events(), account)
            tx.reply(cmd.CommandCompleted(request_id=c.request_id, account_id=account_id))

    async def on_close_account(self, msg: Inbound[cmd.CloseAccount]) -> None:
        c = msg.message
        await self._authenticated(msg, c.request_id, self._close)

    async def _close(self, tx: Transaction, s: Store, claims: cmd.AccessTokenClaims,
                     c: cmd.CloseAccount) -> cmd.CommandCompleted:
        """Close: every session ends, personal data is minimised, guardianships end (a child
        left without a primary can be claimed again with proof)."""
        account, _session = await self._session_of(s, claims, tx.now)
        loaded = account.version
        contacts = d.Account.from_doc(account.to_doc())  # for the contacts tombstone
        if account.close(tx.now):
            await s.save_account(account, loaded)
            self._emit(tx, account.pull_events(), contacts)
            for child in await s.children_of(account.account_id):
                child_version = child.version
                child.drop_closed_account(account_id=account.account_id, now=tx.now)
                await s.save_child(child, child_version)
                self._emit(tx, child.pull_events())
        return cmd.CommandCompleted(request_id=c.request_id, account_id=account.account_id)


class _Answered(d.AuthRejected):
    """Raised after a state-changing refusal was already answered and must be committed."""

    def __init__(self) -> None:
        super().__init__(d.Reason.NOT_PERMITTED)
