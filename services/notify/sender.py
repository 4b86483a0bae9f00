"""The sender: a tick that hands due messages to the channels and records each outcome.

Delivery state lives in ``notify_messages``; the sender is stateless. A pass claims due
messages with a lease (so two instances never send the same message at once, and a crashed
instance's claims expire), calls the providers concurrently, then records each outcome in its
own transaction: sent, failed with the next attempt scheduled by backoff, or dead after the
bounded number of attempts. A dead push falls back to one SMS when the parent allows it. Every
outcome is published on notify.deliveries.v1 through the outbox.

Between the provider call and the record a crash can make the provider see a message twice;
each call carries the dedupe key as idempotency key so a provider can drop the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from services.notify import domain as d
from services.notify import outbound, store
from services.notify.channels import Channels, Delivery
from services.notify.settings import Settings
from services.runtime.logs import get_logger
from services.runtime.mongo import Transaction
from services.runtime.service import Runtime

log = get_logger("schoolcard.notify.sender")


class Sender:
    def __init__(self, rt: Runtime, channels: Channels) -> None:
        self.rt = rt
        self.channels = channels
        s: Settings = rt.settings  # type: ignore[assignment]
        self.settings = s
        self.owner = rt.uow.instance_id
        self.policy = d.RetryPolicy(max_attempts=s.send_max_attempts,
                                    base=timedelta(milliseconds=s.send_backoff_ms),
                                    cap=timedelta(milliseconds=s.send_backoff_max_ms))
        self.wakeup = asyncio.Event()
        self._limit = asyncio.Semaphore(s.send_concurrency)

    def wake(self) -> None:
        self.wakeup.set()

    async def tick(self) -> None:
        """One pass; when it found less than a full batch, wait for new work or the poll."""
        self.wakeup.clear()
        handled = await self.run_once()
        if handled < self.settings.send_batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), self.settings.send_poll_ms / 1000)

    async def run_once(self) -> int:
        now = self.rt.clock()
        lease = timedelta(seconds=self.settings.send_lease_s)
        batch = await store.claim_due(self.rt.db, now, self.owner, lease, self.settings.send_batch)
        if not batch:
            return 0
        push_for = [m.address for m in batch if m.channel is d.Channel.PUSH]
        tokens = await store.push_tokens(self.rt.db, push_for) if push_for else {}
        async with self.channels:
            outcomes = await asyncio.gather(*(self._send(m, tokens) for m in batch))
        await self.record_all([(m.dedupe_key, o) for m, o in zip(batch, outcomes, strict=True)])
        return len(batch)

    async def record_all(self, outcomes: list[tuple[str, Delivery]]) -> None:
        """Record a pass's outcomes in one transaction; if it fails (another sender or the
        consumer wrote one of the messages meanwhile), each in its own."""
        try:
            async with self.rt.uow.batch([]):
                for key, outcome in outcomes:
                    await self.record(key, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("recording a pass in one transaction failed; one by one",
                     size=len(outcomes), error=type(exc).__name__)
            for key, outcome in outcomes:
                await self.record(key, outcome)

    async def _send(self, message: d.Message, tokens: dict[str, list[str]]) -> Delivery:
        async with self._limit:
            try:
                return await self.channels.send(message, tokens.get(message.address, []))
            except Exception as exc:  # an adapter bug must not stop the other messages
                log.exception("channel adapter failed", **message.to_log())
                return Delivery(False, error=type(exc).__name__)

    async def record(self, key: str, outcome: Delivery) -> None:
        async with self.rt.transaction() as tx:
            loaded = await store.load_message(tx, key)
            if loaded is None:
                return
            message, owner = loaded
            if message.is_terminal or owner != self.owner:
                return  # our lease expired and another sender took over
            version = message.version
            if outcome.ok:
                event: d.DeliveryEvent | None = message.mark_sent(tx.now, outcome.provider_id)
            else:
                event = message.mark_failed(tx.now, outcome.error, permanent=outcome.permanent,
                                            policy=self.policy)
            await store.save_message(tx, message, version)
            wired = outbound.to_wire(event, message, tx.now)
            if wired is not None:
                topic, record_key, record, mid = wired
                tx.emit(topic, record_key, record, message_id=mid)
            if isinstance(event, d.MessageDead) and message.channel is d.Channel.PUSH:
                await self._fall_back(tx, message)
            tx.on_commit(lambda: log.info("delivery recorded", **message.to_log(),
                                          error=outcome.error or None))
            if isinstance(event, d.MessageDead):
                tx.on_commit(self.wake)

    async def _fall_back(self, tx: Transaction, push: d.Message) -> None:
        guardian = await store.load_guardian(tx, push.guardian_id or "")
        if guardian is None:
            return
        sms = d.fall_back_to_sms(push, guardian, tx.now)
        if isinstance(sms, d.Message):
            existing = await store.existing_messages(tx, [sms.dedupe_key])
            if d.admit(existing.get(sms.dedupe_key), sms) is sms:
                await store.insert_messages(tx, [sms])

    async def digest_tick(self) -> None:
        """Fold held messages into each guardian's daily digest once its time has come."""
        now = self.rt.clock()
        for account_id in await store.held_guardians(self.rt.db, (now + timedelta(days=1)).date()):
            async with self.rt.transaction() as tx:
                guardian = await store.load_guardian(tx, account_id)
                if guardian is None:
                    continue
                day = guardian.digest_day_for(now) - timedelta(days=1)
                if now < guardian.digest_due_at(day):
                    continue
                held = await store.held_messages(tx, account_id)
                versions = {m.dedupe_key: m.version for m in held}
                plan = d.build_digest(guardian, day, held, now)
                for digested in plan.digested:
                    m = next(h for h in held if h.dedupe_key == digested.dedupe_key)
                    await store.save_message(tx, m, versions[m.dedupe_key])
                existing = await store.existing_messages(tx, [m.dedupe_key for m in plan.messages])
                await store.insert_messages(
                    tx, [m for m in plan.messages if d.admit(existing.get(m.dedupe_key), m) is m])
            self.wake()
