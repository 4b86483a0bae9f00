"""Wallet use cases: load the account, make one domain call, commit state + ledger + outbox +
inbox in one transaction. Expected refusals (unknown contract, conflicting payment id) are
results published as events, not errors."""

from __future__ import annotations

from contracts import integrations as inbound
from contracts import wallet as wire
from contracts.catalog import topic_for
from services.runtime.consumer import Inbound
from services.runtime.mongo import Transaction
from services.runtime.service import Runtime
from services.wallet import domain as d
from services.wallet import outbound, store
from services.wallet.settings import Settings


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]

    def _tx(self, msg: Inbound):  # type: ignore[no-untyped-def]
        return self.rt.uow.transaction(inbox_id=msg.inbox_id, cause=msg.envelope,
                                       now=self.rt.clock())

    async def _commit(self, tx: Transaction, account: d.Account, loaded: int | None) -> None:
        await store.save_account(tx, account, loaded)
        await store.append_entries(tx, account.pull_entries())
        for event in account.pull_events():
            self._emit(tx, event)

    def _emit(self, tx: Transaction, event: object) -> None:
        wired = outbound.to_wire(event)
        if wired is not None:
            topic, key, message, mid = wired
            tx.emit(topic, key, message, message_id=mid)

    async def on_card_issued(self, msg: Inbound) -> None:
        card: inbound.CardIssued = msg.message
        async with self._tx(msg) as tx:
            if await store.load_account(tx, card.contract) is not None:
                return  # already opened by an earlier delivery of the same card
            school = await store.school_settings(tx, card.school_id)
            account = d.Account.open(
                contract=card.contract, card_uid=card.card_uid, school_id=card.school_id,
                time_zone=card.school_tz, now=tx.now,
                grace_meal_limit=school.get("grace_meal_max_debt",
                                            self.settings.grace_meal_default))
            await self._commit(tx, account, None)

    async def on_top_up(self, msg: Inbound) -> None:
        top_up: inbound.TopUpReceived = msg.message
        async with self._tx(msg) as tx:
            conflict = await store.claim_payment(tx, top_up.payment_id, top_up.contract,
                                                 top_up.amount)
            account = await store.load_account(tx, top_up.contract)
            if conflict or account is None:
                self._reject(tx, top_up, "payment_id_conflict" if conflict else "unknown_contract")
                return
            loaded = account.version
            try:
                result = account.top_up(
                    top_up.payment_id, top_up.amount, now=tx.now,
                    sub_balance=d.SubBalance(top_up.sub_balance.value),
                    channel=d.TopUpChannel(top_up.channel.value),
                    auto_top_up_request_id=top_up.auto_top_up_request_id)
            except d.WalletRejected as exc:
                self._reject(tx, top_up, "payment_id_conflict"
                             if exc.reason is d.RejectionReason.IDEMPOTENCY_CONFLICT
                             else exc.reason.value)
                return
            if result.replayed:
                self._emit(tx, d.TopUpCredited(
                    account.contract, top_up.payment_id, result.amount, result.sub_balance,
                    d.TopUpChannel(top_up.channel.value), result.grace_debt_settled,
                    result.balances, tx.now))
                return
            await self._commit(tx, account, loaded)
            if top_up.receipt_email:
                receipt = wire.ReceiptIssued(contract=account.contract,
                                             payment_id=top_up.payment_id,
                                             amount=top_up.amount, email=top_up.receipt_email,
                                             issued_at=tx.now)
                tx.emit(topic_for(wire.ReceiptIssued).name, account.contract, receipt,
                        message_id=outbound.message_id("receipt", top_up.payment_id))

    def _reject(self, tx: Transaction, top_up: inbound.TopUpReceived, reason: str) -> None:
        rejected = wire.TopUpRejected(contract=top_up.contract, payment_id=top_up.payment_id,
                                      amount=top_up.amount, reason=reason)
        tx.emit(topic_for(wire.TopUpRejected).name, top_up.contract, rejected)
