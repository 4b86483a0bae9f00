"""Wallet use cases, each of the runtime's one shape (``services/runtime/usecase.py``):
authorize, load the account, one domain call, commit state + ledger + outbox + inbox in one
transaction, reply.

Declined sales and fares are results, not errors: an event (and a decision to the till). A
refusal (``WalletRejected``, ``Refused``, a token refused) is an ErrorReply to an app and a
dead letter for an integrator's or a service's event; input that can never succeed whoever
sent it (an operation id reused for another contract) is dead-lettered (``Rejected``). A
write conflict on the account propagates: the consumer reruns the message with fresh state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import integrations as inbound
from contracts import transit
from contracts import wallet as wire
from contracts.auth import AccessTokenClaims
from contracts.envelope import CommandAccepted
from services.runtime import paging
from services.runtime.consumer import Inbound, Rejected
from services.runtime.logs import get_logger
from services.runtime.mongo import ConcurrencyError, Transaction
from services.runtime.service import Runtime
from services.runtime.usecase import Case, Refused, UseCases
from services.wallet import domain as d
from services.wallet import outbound, store
from services.wallet.settings import Settings

log = get_logger("schoolcard.wallet")

MAX_REISSUE_HOPS = 16  # a card reissued more often than this in one fare's lifetime is absurd
Operation = Callable[[d.Account, AccessTokenClaims, Transaction], object]


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self._bonus_excluded = tuple(c.value for c in self.settings.bonus_excluded_categories)
        self.case = UseCases(rt, refusals=(d.WalletRejected,))

    # --- plumbing -------------------------------------------------------------------------------

    async def _commit(self, tx: Transaction, account: d.Account, loaded: int | None) -> None:
        await store.save_account(tx, account, loaded)
        try:
            await store.append_entries(tx, account.pull_entries())
        except store.OperationClash as exc:
            raise Rejected("operation_id_conflict",
                           f"operation {exc} was already applied to another contract") from None
        for event in account.pull_events():
            self._emit(tx, event)

    def _emit(self, tx: Transaction, event: object, *, replay: bool = False) -> None:
        wired = outbound.to_wire(event)
        if wired is not None:
            self._send(tx, wired, replay=replay)

    @staticmethod
    def _send(tx: Transaction, wired: outbound.Wired, *, replay: bool = False) -> None:
        topic, key, message, mid = wired
        tx.emit(topic, key, message, message_id=mid, replay=replay)

    # --- integrators: cards and top-ups -----------------------------------------------------------

    async def on_card_issued(self, msg: Inbound[inbound.CardIssued]) -> None:
        card = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            if await store.load_account(tx, card.contract) is not None:
                return  # already opened by an earlier delivery of the same card
            school = await store.school_settings(tx, card.school_id)
            account = d.Account.open(
                contract=card.contract, card_uid=card.card_uid, school_id=card.school_id,
                time_zone=card.school_tz, now=tx.now,
                grace_meal_limit=school.get("grace_meal_max_debt",
                                            self.settings.grace_meal_default))
            parked = await self._apply_parked(tx, account)
            try:
                await self._commit(tx, account, None)
            except store.AccountExists:
                raise ConcurrencyError(card.contract) from None  # opened meanwhile
            self._receipts(tx, parked)

    async def on_card_reissued(self, msg: Inbound[inbound.CardReissued]) -> None:
        event = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            old = await self._account(tx, event.old_contract, rides_since=tx.now - timedelta(
                days=d.RIDES_MOVED_ON_REISSUE_DAYS))
            loaded = old.version
            school = await store.school_settings(tx, event.school_id)
            outcome = d.reissue_card(
                old, reissue_id=f"reissue-{event.old_contract}-{event.new_contract}",
                new_contract=event.new_contract, new_card_uid=event.new_card_uid,
                now=tx.now, school_id=event.school_id, time_zone=event.school_tz,
                grace_meal_limit=school.get("grace_meal_max_debt"))
            parked: list[inbound.TopUpReceived] = []
            if outcome.new_account is not None:
                parked = await self._apply_parked(tx, outcome.new_account)
                try:
                    await self._commit(tx, outcome.new_account, None)
                except store.AccountExists:
                    raise Rejected("contract_in_use", f"{event.new_contract} is already "
                                   "open") from None
            await self._commit(tx, old, loaded)
            self._receipts(tx, parked)
            await self._close_new_card_applications(tx, event.old_contract)

    async def on_top_up(self, msg: Inbound[inbound.TopUpReceived]) -> None:
        top_up = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            conflict = await store.claim_payment(tx, top_up.payment_id, top_up.contract,
                                                 top_up.amount)
            account = await store.load_account(tx, top_up.contract,
                                               {"top_ups": [top_up.payment_id]})
            loaded = account.version if account is not None else None
            decision = d.receive_top_up(
                account, top_up.payment_id, top_up.amount, payment_id_reused=bool(conflict),
                now=tx.now, sub_balance=d.SubBalance(top_up.sub_balance.value),
                channel=d.TopUpChannel(top_up.channel.value),
                auto_top_up_request_id=top_up.auto_top_up_request_id)
            for event in decision.resend:
                self._emit(tx, event, replay=True)
            match decision.verdict:
                case d.TopUpVerdict.PARKED:
                    await store.park_top_up(tx, top_up)
                case d.TopUpVerdict.REJECTED:
                    self._reject_top_up(tx, top_up, decision.rejection)
                case d.TopUpVerdict.CREDITED if account is not None:
                    await self._commit(tx, account, loaded)
                    self._receipts(tx, [top_up])

    async def on_auto_top_up_failed(self, msg: Inbound[inbound.AutoTopUpCollectionFailed]) -> None:
        """The integrator could not collect a planned payment: tell the parent, ask again at
        the next crossing. A request no longer pending (answered, withdrawn, failed before)
        changes nothing."""
        failure = msg.message
        async with self.case(msg) as uc:
            account = await self._account(uc.tx, failure.contract)
            loaded = account.version
            account.cancel_auto_top_up(failure.request_id, reason=failure.reason, now=uc.tx.now)
            await self._commit(uc.tx, account, loaded)

    async def _apply_parked(self, tx: Transaction,
                            account: d.Account) -> list[inbound.TopUpReceived]:
        """Credit the payments that came before the account opened, in the order they came;
        one the domain refuses is rejected like any top-up. Returns the credited ones."""
        credited = []
        for top_up in await store.take_parked_top_ups(tx, account.contract):
            try:
                _credit(account, top_up, tx.now)
            except d.WalletRejected as exc:
                self._reject_top_up(tx, top_up, exc.reason.value)
                continue
            credited.append(top_up)
        return credited

    def _receipts(self, tx: Transaction, top_ups: list[inbound.TopUpReceived]) -> None:
        for top_up in top_ups:
            if top_up.receipt_email:
                self._send(tx, outbound.receipt(top_up, top_up.receipt_email, tx.now))

    async def expire_parked_top_ups(self) -> None:
        """Tick: a payment parked longer than ``WALLET_PARKED_TOP_UP_TTL_S`` is rejected
        (``unknown_contract``) so the payment provider refunds it."""
        before = datetime.now(UTC) - timedelta(seconds=self.settings.parked_top_up_ttl_s)
        for payment_id in await store.expired_parked_top_ups(self.rt.db, before):
            async with self.rt.transaction() as tx:
                top_up = await store.unpark_top_up(tx, payment_id)
                if top_up is not None:
                    self._reject_top_up(tx, top_up, "unknown_contract")

    def _reject_top_up(self, tx: Transaction, top_up: inbound.TopUpReceived, reason: str) -> None:
        rejected = wire.TopUpRejected(contract=top_up.contract, payment_id=top_up.payment_id,
                                      amount=top_up.amount, reason=reason)
        tx.emit("wallet.events.v1", top_up.contract, rejected,
                message_id=outbound.message_id("topup-rejected", top_up.payment_id,
                                               top_up.contract, top_up.amount))

    # --- canteen sales --------------------------------------------------------------------------

    async def on_sale(self, msg: Inbound[inbound.CanteenSaleRequested]) -> None:
        """Decide a till's sale. The decision goes back to the till keyed by terminal; the
        posted or declined sale goes to the parents. A repeated sale id re-sends the recorded
        outcome with the same message ids."""
        sale = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            credential = await store.load_credential(tx, sale.card_uid)
            if credential is not None and d.refuses_sale(credential):
                for wired in outbound.blocked_credential_sale(sale, credential.contract, tx.now):
                    self._send(tx, wired)
                return
            wants: store.Wants = {"sales": [sale.sale_id]}
            account = (await store.load_account(tx, credential.contract, wants)
                       if credential is not None
                       else await store.account_by_card(tx, sale.card_uid, wants))
            if account is None:
                self._send(tx, outbound.unknown_card_sale(sale, tx.now))
                self._send(tx, outbound.sale_decision(sale, None, tx.now))
                return
            loaded = account.version
            decision = account.decide_sale(
                sale.sale_id, terminal_id=sale.terminal_id,
                items=outbound.domain_items(sale.items), sold_at=sale.sold_at, now=tx.now,
                bonus_points=sale.bonus_to_redeem,
                bonus_excluded_categories=self._bonus_excluded)
            await self._commit(tx, account, loaded)
            for event in decision.resend:
                self._emit(tx, event, replay=True)
            self._send(tx, outbound.sale_decision(sale, decision.result, decision.decided_at))

    # --- transit fares ----------------------------------------------------------------------------

    @staticmethod
    async def _fare_account(tx: Transaction, contract: str, ride_id: str,
                            wants: store.Wants) -> d.Account | None:
        """The account that answers for a fare of the contract: after a card reissue, the new
        contract's for a late tap of the old card and for the rides that moved with it."""
        wants = {"rides": [ride_id], **wants}
        account = await store.load_account(tx, contract, wants)
        for _ in range(MAX_REISSUE_HOPS):
            successor = account.fare_successor(ride_id) if account is not None else None
            if successor is None:
                break
            account = await store.load_account(tx, successor, wants)
        return account

    async def on_fare_assessed(self, msg: Inbound[transit.FareAssessed]) -> None:
        fare = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            account = await self._fare_account(tx, fare.contract, fare.ride_id, {})
            if account is None:
                self._send(tx, outbound.unknown_card_fare(fare, tx.now))
                return
            loaded = account.version
            decision = account.decide_fare(fare.ride_id, fare.amount, now=tx.now)
            await self._commit(tx, account, loaded)
            for event in decision.resend:
                self._emit(tx, event, replay=True)

    async def on_fare_corrected(self, msg: Inbound[transit.FareCorrected]) -> None:
        correction = msg.message
        ride_id = correction.charged_under or correction.ride_id
        async with self.case(msg) as uc:
            tx = uc.tx
            account = await self._fare_account(tx, correction.contract, ride_id,
                                               {"fare_refunds": [correction.correction_id]})
            if account is None:
                raise Refused("unknown_contract", f"no account {correction.contract}")
            loaded = account.version
            corrected = account.correct_fare(correction.correction_id, ride_id,
                                             correction.refund, now=tx.now)
            await self._commit(tx, account, loaded)
            for event in corrected.resend:
                self._emit(tx, event, replay=True)

    # --- app commands -----------------------------------------------------------------------------

    async def _command(self, msg: Inbound, action: str, contract: str,
                       operate: Operation, wants: store.Wants | None = None,
                       then: Callable[[d.Account], store.Wants] | None = None) -> None:
        """Authorise, load (with the records ``wants`` names, then those ``then`` names from
        what was loaded), one domain call, commit, reply CommandAccepted."""
        async with self.case(msg) as uc:
            uc.authorize(action, contract=contract)
            account = await self._account(uc.tx, contract, wants)
            uc.authorize(action, contract=contract, school_id=account.school_id)
            if then is not None:
                await store.load_records(uc.tx, account, then(account))
            loaded = account.version
            operate(account, uc.holder, uc.tx)
            await self._commit(uc.tx, account, loaded)
            uc.tx.reply(CommandAccepted(request_id=msg.message.request_id))

    @staticmethod
    async def _account(tx: Transaction, contract: str, wants: store.Wants | None = None, *,
                       rides_since: datetime | None = None) -> d.Account:
        account = await store.load_account(tx, contract, wants, rides_since=rides_since)
        if account is None:
            raise Refused("unknown_contract", f"no account {contract}")
        return account

    async def on_set_controls(self, msg: Inbound[wire.SetControls]) -> None:
        cmd = msg.message
        limits = cmd.daily_limits

        def operate(a: d.Account, claims: AccessTokenClaims, tx: Transaction) -> object:
            return a.apply_controls(
                now=tx.now, by=claims.sub,
                limits=d.DailyLimits(limits.total, limits.canteen, limits.general)
                if limits else None,
                blocked_categories=[c.value for c in cmd.blocked_categories]
                if cmd.blocked_categories is not None else None,
                blocked_items=cmd.blocked_items, allergens=cmd.allergens,
                low_balance_threshold=cmd.low_balance_threshold)

        await self._command(msg, "change_limits", cmd.contract, operate)

    async def on_set_auto_top_up(self, msg: Inbound[wire.SetAutoTopUp]) -> None:
        cmd = msg.message
        settings = d.AutoTopUpSettings(cmd.enabled, cmd.threshold, cmd.amount,
                                       d.SubBalance(cmd.sub_balance.value))
        await self._command(msg, "change_limits", cmd.contract,
                            lambda a, c, tx: a.set_auto_top_up(settings, now=tx.now, by=c.sub))

    async def on_block_card(self, msg: Inbound[wire.BlockCard]) -> None:
        cmd = msg.message
        if cmd.card_uid is not None:
            await self._block_credential(msg, cmd.card_uid, True, cmd.reason)
            return
        await self._command(msg, "block_card", cmd.contract, lambda a, c, tx: a.block_card(
            now=tx.now, reason=cmd.reason, by=c.sub))

    async def on_unblock_card(self, msg: Inbound[wire.UnblockCard]) -> None:
        cmd = msg.message
        if cmd.card_uid is not None:
            await self._block_credential(msg, cmd.card_uid, False, "")
            return
        await self._command(msg, "block_card", cmd.contract,
                            lambda a, c, tx: a.unblock_card(now=tx.now, by=c.sub))

    async def _block_credential(self, msg: Inbound,
                                card_uid: str, blocked: bool, reason: str) -> None:
        """Block or unblock one credential (a virtual card, or the plastic card alone); the
        account and its other credentials are untouched. A repeat is accepted again."""
        cmd = msg.message
        async with self.case(msg) as uc:
            uc.authorize("block_card", contract=cmd.contract)
            account = await self._account(uc.tx, cmd.contract)
            uc.authorize("block_card", contract=cmd.contract, school_id=account.school_id)
            credential = await store.load_credential(uc.tx, card_uid)
            loaded = credential.version if credential is not None else None
            credential, event = d.set_credential_blocked(
                credential, card_uid=card_uid, contract=cmd.contract,
                plastic_uid=account.card_uid, blocked=blocked, at=uc.tx.now, reason=reason,
                by=uc.holder.sub)
            await store.save_credential(uc.tx, credential, loaded)
            if event is not None:
                self._emit(uc.tx, event)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_virtual_card_issued(self, msg: Inbound[inbound.VirtualCardIssued]) -> None:
        """Map a virtual uid to the contract's account (retiring the uid it replaces)."""
        v = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            account = await self._account(tx, v.contract)
            existing = await store.load_credential(tx, v.card_uid)
            replaced = (await store.load_credential(tx, v.replaces_card_uid)
                        if v.replaces_card_uid else None)
            versions = {c.card_uid: c.version for c in (existing, replaced) if c is not None}
            for credential in d.issue_virtual_credential(
                    existing, replaced, card_uid=v.card_uid, contract=v.contract,
                    kind=v.kind.value, plastic_uid=account.card_uid,
                    replaces=v.replaces_card_uid, at=v.issued_at):
                await store.save_credential(tx, credential, versions.get(credential.card_uid))

    async def on_get_cards(self, msg: Inbound[wire.GetCards]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view", contract=query.contract)
            account = await self._account(uc.tx, query.contract)
            uc.authorize("view", contract=query.contract, school_id=account.school_id)
            credentials = await store.credentials_of(uc.tx, query.contract)
            uc.tx.reply(outbound.cards_reply(account, credentials))

    async def on_move_money(self, msg: Inbound[wire.MoveMoney]) -> None:
        cmd = msg.message
        await self._command(msg, "move_money", cmd.contract, lambda a, c, tx: a.move_money(
            cmd.request_id, source=d.SubBalance(cmd.from_sub_balance.value),
            target=d.SubBalance(cmd.to_sub_balance.value), amount=cmd.amount, now=tx.now),
            {"transfers": [cmd.request_id]})

    async def on_open_dispute(self, msg: Inbound[wire.OpenDispute]) -> None:
        """The dispute id is the request id (the parent's app knows it from its own request)."""
        cmd = msg.message
        await self._command(msg, "dispute", cmd.contract, lambda a, c, tx: a.dispute_operation(
            cmd.request_id, cmd.operation_id, cmd.line, now=tx.now, comment=cmd.comment),
            {"disputes": [cmd.request_id], "sales": [cmd.operation_id],
             "rides": [cmd.operation_id]})

    async def on_resolve_dispute(self, msg: Inbound[wire.ResolveDispute]) -> None:
        cmd = msg.message

        def operate(a: d.Account, claims: AccessTokenClaims, tx: Transaction) -> object:
            if cmd.approve:
                return a.approve_dispute(cmd.dispute_id, refund_amount=cmd.refund,
                                         staff_id=claims.sub, now=tx.now)
            return a.reject_dispute(cmd.dispute_id, staff_id=claims.sub, now=tx.now)

        await self._command(msg, "resolve_dispute", cmd.contract, operate,
                            {"disputes": [cmd.dispute_id]},
                            lambda a: a.records_to_resolve(cmd.dispute_id))

    async def on_refund_sale_line(self, msg: Inbound[wire.RefundSaleLine]) -> None:
        """A staff refund outside a dispute; its refund id is ``staff:<request id>`` (apart
        from a dispute's ``dispute:<id>``), so a retried request refunds once."""
        cmd = msg.message
        refund_id = f"staff:{cmd.request_id}"
        await self._command(msg, "refund", cmd.contract, lambda a, c, tx: a.refund_sale_line(
            refund_id, cmd.sale_id, cmd.line, cmd.amount, staff_id=c.sub, now=tx.now),
            {"sale_refunds": [refund_id], "sales": [cmd.sale_id]})

    async def on_set_grace_meal(self, msg: Inbound[wire.SetGraceMeal]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            uc.authorize("school_settings", school_id=cmd.school_id)
            changed = await store.set_school_grace_meal(
                uc.tx, cmd.school_id, cmd.max_debt if cmd.enabled else 0)
            log.info("grace meal set", school_id=cmd.school_id, accounts=changed)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_tag_statement_line(self, msg: Inbound[wire.TagStatementLine]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            uc.authorize("annotate", contract=cmd.contract)
            account = await self._account(uc.tx, cmd.contract)
            uc.authorize("annotate", contract=cmd.contract, school_id=account.school_id)
            kinds = await store.operation_kinds(uc.tx, cmd.contract, cmd.operation_id)
            tagged = d.tag_statement_line(
                cmd.operation_id, cmd.tags, recorded_kinds=kinds,
                reissue_ids={r.reissue_id for r in (account.predecessor, account.successor)
                             if r is not None})
            await store.save_line_tags(uc.tx, cmd.contract, tagged)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    # --- top-up templates ------------------------------------------------------------------------

    async def _templates(self, uc: Case[Any], contract: str) -> d.TopUpTemplates:
        """Authorise ``top_up`` for the child and load its templates (none yet: empty)."""
        uc.authorize("top_up", contract=contract)
        account = await self._account(uc.tx, contract)
        uc.authorize("top_up", contract=contract, school_id=account.school_id)
        return await store.load_templates(uc.tx, contract) or d.TopUpTemplates(contract)

    async def on_save_top_up_template(self, msg: Inbound[wire.SaveTopUpTemplate]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            templates = await self._templates(uc, cmd.contract)
            loaded = templates.version or None
            templates.save(cmd.template_id or cmd.request_id, name=cmd.name, amount=cmd.amount,
                           sub_balance=d.SubBalance(cmd.sub_balance.value), now=uc.tx.now,
                           create=cmd.template_id is None)
            await store.save_templates(uc.tx, templates, loaded)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_delete_top_up_template(self, msg: Inbound[wire.DeleteTopUpTemplate]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            templates = await self._templates(uc, cmd.contract)
            loaded = templates.version or None
            templates.delete(cmd.template_id)
            await store.save_templates(uc.tx, templates, loaded)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_get_top_up_templates(self, msg: Inbound[wire.GetTopUpTemplates]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            templates = await self._templates(uc, query.contract)
            uc.tx.reply(wire.TopUpTemplatesReply(contract=query.contract, templates=[
                outbound.top_up_template(t) for t in templates.templates]))

    # --- queries ----------------------------------------------------------------------------------

    async def on_get_balance(self, msg: Inbound[wire.GetBalance]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view", contract=query.contract)
            account = await self._account(uc.tx, query.contract)
            uc.authorize("view", contract=query.contract, school_id=account.school_id)
            uc.tx.reply(wire.BalanceReply(contract=account.contract,
                                          balances=outbound.balances(account.balances),
                                          blocked=account.status is d.AccountStatus.BLOCKED))

    async def on_get_controls(self, msg: Inbound[wire.GetControls]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view", contract=query.contract)
            account = await self._account(uc.tx, query.contract)
            uc.authorize("view", contract=query.contract, school_id=account.school_id)
            uc.tx.reply(outbound.controls(account))

    async def on_get_statement(self, msg: Inbound[wire.GetStatement]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view", contract=query.contract)
            statuses = {query.status} if query.status is not None else set()
            unknown = sorted(set(query.kinds or ()) - set(outbound.KINDS)
                             | (statuses - set(outbound.STATUSES)))
            if unknown:
                raise Refused("invalid_filter", f"unknown kind or status: {', '.join(unknown)}")
            low, high = query.amount_min, query.amount_max
            if low is not None and high is not None and low > high:
                raise Refused("invalid_filter", "amount_min is above amount_max")
            account = await store.load_history(uc.tx, query.contract)
            if account is None:
                raise Refused("unknown_contract", f"no account {query.contract}")
            uc.authorize("view", contract=query.contract, school_id=account.school_id)
            start, end = outbound.statement_bounds(query.date_from, query.date_to,
                                                   account.time_zone)
            lines = d.filter_statement(
                d.with_tags(d.statement_lines(account),
                            await store.line_tags(uc.tx, query.contract)),
                start=start, end=end,
                kinds={k for name in query.kinds for k in outbound.KINDS[name]}
                if query.kinds is not None else None,
                statuses=set(outbound.STATUSES[query.status]) if query.status else None,
                text=query.text, tag=d.normalize_tag(query.tag) if query.tag else None,
                amount_min=query.amount_min, amount_max=query.amount_max)
            scope = paging.scope_of(contract=query.contract, date_from=query.date_from,
                                    date_to=query.date_to, kinds=query.kinds,
                                    status=query.status, text=query.text, tag=query.tag,
                                    amount_min=query.amount_min, amount_max=query.amount_max)
            try:
                lines, following = paging.page(sorted(lines, key=_line_key), _line_key,
                                               limit=query.limit, cursor=query.cursor,
                                               scope=scope)
            except paging.InvalidCursor as exc:
                raise Refused("invalid_cursor", str(exc)) from None
            uc.tx.reply(wire.StatementReply(
                contract=account.contract, lines=[outbound.statement_line(x) for x in lines],
                csv=d.statement_csv(lines, time_zone=account.time_zone) if query.csv else None,
                next_cursor=following))

    async def on_get_sales_report(self, msg: Inbound[wire.GetSalesReport]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view_sales", school_id=query.school_id)
            accounts = await store.sales_of_school_day(uc.tx, query.school_id, query.date)
            uc.tx.reply(outbound.sales_report(query, d.sales_report(accounts, day=query.date)))

    # --- autopay by date, services switches -------------------------------------------------

    async def on_set_scheduled_top_up(self, msg: Inbound[wire.SetScheduledTopUp]) -> None:
        cmd = msg.message
        await self._command(msg, "change_limits", cmd.contract,
                            lambda a, c, tx: a.set_scheduled_top_up(
                                cmd.days_of_month, cmd.amount, d.SubBalance(cmd.sub_balance.value),
                                now=tx.now, by=c.sub))

    async def on_change_scheduled_top_up(self, msg: Inbound[wire.ChangeScheduledTopUp]) -> None:
        cmd = msg.message
        await self._command(msg, "change_limits", cmd.contract,
                            lambda a, c, tx: a.switch_scheduled_top_up(
                                d.ScheduleAction(cmd.action.value), now=tx.now, by=c.sub))

    async def on_set_services(self, msg: Inbound[wire.SetServices]) -> None:
        cmd = msg.message

        def operate(a: d.Account, claims: AccessTokenClaims, tx: Transaction) -> object:
            if cmd.transit_payments is None:
                return False
            return a.set_transit_payments(cmd.transit_payments, now=tx.now, by=claims.sub)

        await self._command(msg, "change_limits", cmd.contract, operate)

    async def on_get_payment_settings(self, msg: Inbound[wire.GetPaymentSettings]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view", contract=query.contract)
            account = await self._account(uc.tx, query.contract)
            uc.authorize("view", contract=query.contract, school_id=account.school_id)
            uc.tx.reply(outbound.payment_settings(account))

    async def ask_scheduled_top_ups(self, *, batch: int = store.SCHEDULED_BATCH) -> int:
        """Tick: ask the payment integrator for every due date of the autopay by date that has
        come, one transaction per account. Safe from several instances and across restarts:
        the account remembers the last day it covered (a second asker's save conflicts and,
        rerun, finds nothing due), and the request's id and message id are those of the child
        and the due date. Returns the number of requests made."""
        asked, seen = 0, set[str]()
        now, catch_up = self.rt.clock(), self.settings.scheduled_top_up_catch_up_days
        while True:  # batch after batch: the 1st of the month finds many accounts due
            due = await store.contracts_with_scheduled_due(self.rt.db, now, limit=batch)
            fresh = [contract for contract in due if contract not in seen]
            for contract in fresh:
                seen.add(contract)
                for _ in range(self.settings.conflict_retries + 1):
                    try:
                        asked += await self._ask_scheduled(contract, catch_up)
                        break
                    except ConcurrencyError:
                        continue  # changed meanwhile (a command, another instance): again
            if len(due) < batch or not fresh:
                return asked

    async def _ask_scheduled(self, contract: str, catch_up_days: int) -> int:
        async with self.rt.transaction() as tx:
            account = await store.load_account(tx, contract)
            if account is None:
                return 0
            loaded = account.version
            request = account.ask_scheduled_top_up(now=tx.now, catch_up_days=catch_up_days)
            await self._commit(tx, account, loaded)
            return int(request is not None)

    # --- applications -------------------------------------------------------------------------

    async def on_submit_application(self, msg: Inbound[wire.SubmitApplication]) -> None:
        """The application's id is the request id; a retried request finds it and changes
        nothing."""
        cmd = msg.message
        action = "move_money" if cmd.kind is wire.ApplicationKind.REFUND else "block_card"
        async with self.case(msg) as uc:
            holder = uc.authorize(action, contract=cmd.contract)
            account = await self._account(uc.tx, cmd.contract)
            uc.authorize(action, contract=cmd.contract, school_id=account.school_id)
            existing = await store.load_application(uc.tx, cmd.request_id)
            application = d.Application.submit(
                cmd.request_id, contract=cmd.contract, school_id=account.school_id,
                kind=d.ApplicationKind(cmd.kind.value),
                reason=d.ApplicationReason(cmd.reason.value), comment=cmd.comment,
                by=holder.sub, now=uc.tx.now, existing=existing,
                others=await store.applications(uc.tx, contract=cmd.contract))
            await store.save_application(uc.tx, application,
                                         existing.version if existing else None)
            self._emit_application(uc.tx, application)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_handle_application(self, msg: Inbound[wire.HandleApplication]) -> None:
        """Accept, refuse or finish; a refund application's ``done`` pays the money out and
        closes the account in the same transaction (once: the transition happens once, and
        the ledger operation is keyed by the application id)."""
        cmd = msg.message
        async with self.case(msg) as uc:
            holder = uc.authorize("resolve_dispute", contract=cmd.contract)
            application = await store.load_application(uc.tx, cmd.application_id)
            if application is None or application.contract != cmd.contract:
                raise Refused("unknown_application", f"no application {cmd.application_id}")
            uc.authorize("resolve_dispute", contract=cmd.contract,
                         school_id=application.school_id)
            loaded = application.version
            application.decide(d.ApplicationDecision(cmd.decision.value), by=holder.sub,
                               comment=cmd.comment, now=uc.tx.now)
            if application.awaits_payout:
                account = await self._account(uc.tx, cmd.contract)
                account_loaded = account.version
                paid = account.pay_out(application.application_id, now=uc.tx.now)
                application.paid_out(paid, now=uc.tx.now)
                await self._commit(uc.tx, account, account_loaded)
            await store.save_application(uc.tx, application, loaded)
            self._emit_application(uc.tx, application)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_get_applications(self, msg: Inbound[wire.GetApplications]) -> None:
        query = msg.message
        async with self.case(msg) as uc:
            if (query.contract is None) == (query.school_id is None):
                raise Refused("invalid_filter", "name either a contract or a school")
            if query.contract is not None:
                uc.authorize("view", contract=query.contract)
                account = await self._account(uc.tx, query.contract)
                uc.authorize("view", contract=query.contract, school_id=account.school_id)
            else:
                uc.authorize("resolve_dispute", school_id=query.school_id)
            found = await store.applications(uc.tx, contract=query.contract,
                                             school_id=query.school_id)
            uc.tx.reply(wire.ApplicationsReply(applications=[
                outbound.application(a) for a in found
                if query.status is None or a.status.value == query.status.value]))

    async def _close_new_card_applications(self, tx: Transaction, contract: str) -> None:
        """The card was reissued: the child's open new-card application is done, in the
        reissue's transaction (a repeated reissue finds none open)."""
        found = await store.applications(tx, contract=contract)
        loaded = {a.application_id: a.version for a in found}
        for application in d.done_by_reissue(found, now=tx.now):
            await store.save_application(tx, application, loaded[application.application_id])
            self._emit_application(tx, application)

    def _emit_application(self, tx: Transaction, application: d.Application) -> None:
        for event in application.pull_events():
            self._send(tx, outbound.application_changed(event))

    # --- ticks ------------------------------------------------------------------------------------

    async def expire_bonuses(self) -> int:
        """Expire every bonus lot past its 12 months (one transaction per account); safe to
        run from several instances: each lot expires in its own idempotent operation."""
        now = self.rt.clock()
        expired = 0
        for contract in await store.contracts_with_expired_bonus(self.rt.db, now):
            async with self.rt.transaction() as tx:
                account = await store.load_account(tx, contract)
                if account is None:
                    continue
                loaded = account.version
                expired += account.expire_bonuses(now=tx.now)
                await self._commit(tx, account, loaded)
        return expired


def _credit(account: d.Account, top_up: inbound.TopUpReceived, now: datetime) -> d.TopUpResult:
    return account.top_up(top_up.payment_id, top_up.amount, now=now,
                          sub_balance=d.SubBalance(top_up.sub_balance.value),
                          channel=d.TopUpChannel(top_up.channel.value),
                          auto_top_up_request_id=top_up.auto_top_up_request_id)


def _line_key(line: d.StatementLine) -> paging.Key:
    """The statement's total order: time, then the order operations were applied."""
    return paging.instant(line.at), line.seq, line.kind.value, line.operation_id
