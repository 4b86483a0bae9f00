"""Transit use cases, each of the runtime's one shape (``services/runtime/usecase.py``): load
the card's travel, one domain call, commit aggregate + ride history + outbox + inbox in one
transaction.

A refusal (``TransitRejection``, ``Refused``, a token refused) is dead-lettered with its code
for input that cannot be priced (a malformed or impossible tap, a tap for a card the issuing
system never announced: ``unknown_card``, an operator without fare rules) and answered with an
error reply for an app command.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from contracts import integrations as inbound
from contracts import transit as wire
from contracts import wallet as wallet_wire
from contracts.envelope import CommandAccepted
from services.runtime import paging
from services.runtime.consumer import Inbound
from services.runtime.mongo import Transaction
from services.runtime.service import Runtime
from services.runtime.usecase import Refused, UseCases, explain_refusal
from services.transit import domain as d
from services.transit import outbound, store
from services.transit.domain.rules import rules_update_refusal
from services.transit.settings import Settings

Snapshot = dict[str, tuple[int, str, str | None]]


def _snapshot(travel: d.CardTravel) -> Snapshot:
    return {r.ride_id: (r.fare, r.explanation.value, r.debit_status.value)
            for r in travel.rides.values()}


def _changed(travel: d.CardTravel, before: Snapshot) -> list[str]:
    """Rides whose history line must be rewritten: new ones and repriced ones."""
    after = _snapshot(travel)
    return [ride_id for ride_id, state in after.items() if before.get(ride_id) != state]


def _explain(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, d.TransitRejection):
        return exc.reason.value, exc.detail
    if isinstance(exc, d.FareRulesError):
        return "invalid_rules", str(exc)
    return explain_refusal(exc)


def _tap(t: inbound.ValidatorTapped) -> d.Tap:
    return d.Tap(tap_id=t.tap_id, validator_id=t.validator_id, vehicle_id=t.vehicle_id,
                 route=t.route, mode=d.Mode(t.mode.value), stop=t.stop_id,
                 card_uid=t.card_uid, tapped_at=t.tapped_at, offline=t.offline)


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self.case = UseCases(rt, refusals=(d.TransitRejection, d.FareRulesError),
                             explain=_explain)

    # --- plumbing ------------------------------------------------------------------------------

    def _emit(self, tx: Transaction, events: Sequence[d.TransitEvent], contract: str, *,
              replay: bool = False) -> None:
        for topic, key, message, mid in outbound.to_wire(events, contract, tx.now):
            tx.emit(topic, key, message, message_id=mid, replay=replay)

    async def _commit(self, tx: Transaction, travel: d.CardTravel, loaded: int | None,
                      outcome: d.Outcome, contract: str) -> None:
        """Save the aggregate unless the outcome is a replay, then (re-)emit its events with
        their deterministic ids."""
        if not outcome.duplicate:
            await store.save_travel(tx, travel, loaded)
        self._emit(tx, outcome.events, contract, replay=outcome.duplicate)

    async def _travel_of_ride(self, tx: Transaction,
                              ride_id: str) -> tuple[d.CardTravel, store.RideRef]:
        ref = await store.ride(tx, ride_id)
        travel = await store.load_travel(tx, ref.aggregate_id) if ref else None
        if ref is None or travel is None:
            raise Refused("unknown_ride", f"transit recorded no ride {ride_id}")
        return travel, ref

    # --- card issuing system -------------------------------------------------------------------

    async def on_card_issued(self, msg: Inbound[inbound.CardIssued]) -> None:
        card = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            await store.save_card(tx, card.card_uid, card.contract, card.school_id,
                                  card.school_tz)
            await self._block_if_contract_blocked(tx, card.contract)

    async def on_card_reissued(self, msg: Inbound[inbound.CardReissued]) -> None:
        """The old contract's cards close at ``reissued_at`` (their earlier rides, even
        uploaded late, still price) and go on the deny list (a replaced card must not ride);
        the new card inherits the student concession and transit payments switched off (as
        wallet's account does)."""
        r = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            old = await store.cards_of(tx, r.old_contract)
            concession = next((c.concession for c in old if c.concession is not None), None)
            await store.close_cards(tx, r.old_contract, r.reissued_at)
            await self._block_cards(tx, [c for c in old if c.status == "active"], True,
                                    r.old_contract)
            await store.save_card(tx, r.new_card_uid, r.new_contract, r.school_id, r.school_tz,
                                  concession)
            await store.carry_payments_off(tx, r.old_contract, r.new_contract)
            await self._block_if_contract_blocked(tx, r.new_contract)

    async def on_virtual_card_issued(self, msg: Inbound[inbound.VirtualCardIssued]) -> None:
        """A virtual card rides like the plastic card of its contract (and its concession); the
        uid it replaces closes at ``issued_at`` and goes on the deny list."""
        v = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            known = await store.card(tx, v.card_uid)
            if known is not None and known.contract != v.contract:
                raise Refused("credential_conflict",
                              f"card {v.card_uid} belongs to another contract")
            cards = await store.cards_of(tx, v.contract)
            replaced = next((c for c in cards if c.card_uid == v.replaces_card_uid), None)
            if v.replaces_card_uid is not None and replaced is None:
                raise Refused("unknown_credential",
                              f"contract {v.contract} has no card {v.replaces_card_uid}")
            concession = next((c.concession for c in cards if c.concession is not None), None)
            await store.save_card(tx, v.card_uid, v.contract, v.school_id, v.school_tz,
                                  concession)
            if replaced is not None and replaced.status == "active":
                await store.close_card(tx, replaced.card_uid, v.issued_at)
                await self._block_cards(tx, [replaced], True, v.contract)
            await self._block_if_contract_blocked(tx, v.contract)

    async def _block_if_contract_blocked(self, tx: Transaction, contract: str) -> None:
        """Wallet's block of the contract, or its transit payments switched off, was read
        before the card: the card starts denied."""
        if await store.contract_blocked(tx, contract):
            await self._set_blocked_in(tx, contract, True)
        off_at = await store.payments_off_at(tx, contract)
        if off_at is not None:
            await self._switch_payments_in(tx, contract, off_at)

    # --- validators ----------------------------------------------------------------------------

    async def on_validator_tapped(self, msg: Inbound[inbound.ValidatorTapped]) -> None:
        t = msg.message
        operator_id = self.settings.operator_aliases.get(t.operator_id, t.operator_id)
        async with self.case(msg) as uc:
            tx = uc.tx
            card = await store.card(tx, t.card_uid)
            if card is None:
                raise Refused("unknown_card", f"card {t.card_uid} was never issued")
            if not card.accepts_tap_at(t.tapped_at):
                raise Refused("card_closed", f"card {t.card_uid} was reissued before the tap")
            if d.refuses_tap(card.own_blocked_at, t.tapped_at):
                raise Refused("card_blocked", "the card alone was blocked before the tap")
            if d.refuses_fare_tap(card.payments_off_at, t.tapped_at):
                raise Refused("transit_payments_off",
                              "the card's transit payments were switched off before the tap")
            rulebook = await store.rulebook(tx, operator_id)
            if rulebook is None:
                raise Refused("unknown_operator", f"no fare rules for operator {operator_id}")
            travel = await store.load_travel(tx, f"{operator_id}:{t.card_uid}")
            loaded = travel.version if travel else None
            travel = travel or d.CardTravel(t.card_uid, operator_id, concession=card.concession,
                                            blocked=card.blocked,
                                            payments_off=card.payments_off,
                                            denied=card.blocked or card.payments_off)
            before = _snapshot(travel)
            outcome = travel.record_tap(_tap(t), rulebook, tx.now)
            await self._commit(tx, travel, loaded, outcome, card.contract)
            await store.save_rides(tx, travel, _changed(travel, before), card.contract,
                                   rulebook.time_zone)

    # --- wallet's answers ----------------------------------------------------------------------

    async def on_fare_debited(self, msg: Inbound[wallet_wire.FareDebited]) -> None:
        f = msg.message
        await self._wallet_answer(msg, f.ride_id, f.amount, None)

    async def on_fare_declined(self, msg: Inbound[wallet_wire.FareDeclined]) -> None:
        """The card could not pay: for lack of money the fare becomes debt and the card goes
        on the deny list; any other reason only marks the ride declined (see the domain)."""
        f = msg.message
        await self._wallet_answer(msg, f.ride_id, f.amount, f.reason.value)

    async def _wallet_answer(self, msg: Inbound, ride_id: str, amount: int,
                             declined: str | None) -> None:
        """``declined``: wallet's decline reason, None when it took the debit."""
        async with self.case(msg) as uc:
            tx = uc.tx
            travel, ref = await self._travel_of_ride(tx, ride_id)
            loaded, before = travel.version, _snapshot(travel)
            if declined is None:
                outcome = travel.record_fare_debited(ride_id, amount, tx.now)
            else:
                outcome = travel.record_fare_declined(ride_id, amount, tx.now, declined)
            await self._commit(tx, travel, loaded, outcome, ref.contract)
            await store.save_rides(tx, travel, _changed(travel, before), ref.contract, "UTC")

    async def on_debt_settled(self, msg: Inbound[wallet_wire.DebtSettled]) -> None:
        """A top-up covered what the contract owed: lift the deny-list entry of each of its
        cards (with every operator), and mark the fares it paid as debited wherever they were
        ridden (after a reissue, on the old card). The settlement id is wallet's deterministic
        message id."""
        s = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            cards = await store.cards_of(tx, s.contract)
            travels = {t.aggregate_id: t for t in [
                *await store.travels_of_cards(tx, [c.card_uid for c in cards]),
                *await store.travels_of_rides(tx, s.fares_collected)]}
            for travel in travels.values():
                card = await store.card(tx, travel.card_uid)
                contract = card.contract if card else s.contract  # a reissued card's own
                loaded, before = travel.version, _snapshot(travel)
                outcome = travel.record_debt_settled(msg.envelope.id, tx.now,
                                                     s.fares_collected)
                await self._commit(tx, travel, loaded, outcome, contract)
                await store.save_rides(tx, travel, _changed(travel, before), contract, "UTC")

    async def on_card_blocked(self, msg: Inbound[wallet_wire.CardBlocked]) -> None:
        b = msg.message
        if b.card_uid is not None:
            await self._set_own_block(msg, b.contract, b.card_uid, b.blocked_at)
            return
        await self._set_blocked(msg, b.contract, True)

    async def on_card_unblocked(self, msg: Inbound[wallet_wire.CardUnblocked]) -> None:
        u = msg.message
        if u.card_uid is not None:
            await self._set_own_block(msg, u.contract, u.card_uid, None)
            return
        await self._set_blocked(msg, u.contract, False)

    async def on_transit_payments_switched(
            self, msg: Inbound[wallet_wire.TransitPaymentsSwitched]) -> None:
        """Switched off: every active card of the contract goes on the deny list at once
        (reason ``transit_payments_off``) and its later taps are refused; switched on: the
        entry is lifted unless the card is still blocked or owes fares."""
        s = msg.message
        async with self.case(msg) as uc:
            await self._switch_payments_in(uc.tx, s.contract,
                                           None if s.enabled else s.switched_at)

    async def _switch_payments_in(self, tx: Transaction, contract: str,
                                  off_at: datetime | None) -> None:
        """Cards whose state changes only (a repeated switch publishes nothing); a card that
        never rode gets its entry without a travel aggregate."""
        off = off_at is not None
        cards = [c for c in await store.cards_of(tx, contract)
                 if c.status == "active" and c.payments_off != off]
        await store.set_payments_off(tx, contract, off_at)
        travels = await store.travels_of_cards(tx, [c.card_uid for c in cards])
        for travel in travels:
            loaded = travel.version
            await self._commit(tx, travel, loaded, travel.set_payments_off(off, tx.now),
                               contract)
        ridden = {t.card_uid for t in travels}
        for card in cards:
            if card.card_uid not in ridden:
                self._emit(tx, d.untravelled_card_blocked(card.card_uid, card.blocked, tx.now,
                                                          payments_off=off), contract)

    async def _set_own_block(self, msg: Inbound, contract: str, card_uid: str,
                             blocked_at: datetime | None) -> None:
        """One card blocked (``blocked_at``) or unblocked on its own: its deny-list entry
        follows, the contract's other cards keep theirs; an unblock under a blocked contract
        keeps the card denied."""
        async with self.case(msg) as uc:
            tx = uc.tx
            await store.set_own_block(tx, card_uid, contract, blocked_at)
            card = await store.card(tx, card_uid)
            denied = blocked_at is not None or await store.contract_blocked(tx, contract)
            await self._block_cards(tx, [card] if card else [], denied, contract)

    async def _set_blocked(self, msg: Inbound, contract: str, blocked: bool) -> None:
        """A lost card goes on the validators' deny list at once, and comes off when it is
        unblocked and owes nothing, for every active card of the contract."""
        async with self.case(msg) as uc:
            tx = uc.tx
            await self._set_blocked_in(tx, contract, blocked)

    async def _set_blocked_in(self, tx: Transaction, contract: str,
                              blocked: bool) -> list[d.TransitEvent]:
        cards = [c for c in await store.cards_of(tx, contract)
                 if c.status == "active" and d.follows_contract_block(c.own_blocked_at, blocked)]
        await store.set_cards_blocked(tx, contract, blocked)
        return await self._block_cards(tx, cards, blocked, contract)

    async def _block_cards(self, tx: Transaction, cards: list[store.Card], blocked: bool,
                           contract: str) -> list[d.TransitEvent]:
        """Deny (or allow) each card with every operator; a card that never rode gets its
        deny-list entry without a travel aggregate."""
        events: list[d.TransitEvent] = []
        travels = await store.travels_of_cards(tx, [c.card_uid for c in cards])
        for travel in travels:
            loaded = travel.version
            outcome = travel.set_blocked(blocked, tx.now)
            await self._commit(tx, travel, loaded, outcome, contract)
            events.extend(outcome.events)
        ridden = {t.card_uid for t in travels}
        for card in cards:
            if card.card_uid not in ridden:
                untravelled = d.untravelled_card_blocked(card.card_uid, blocked, tx.now,
                                                         payments_off=card.payments_off)
                self._emit(tx, untravelled, contract)
                events.extend(untravelled)
        return events

    # --- app commands and queries --------------------------------------------------------------

    async def on_set_fare_rules(self, msg: Inbound[wire.SetFareRules]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            uc.authorize("set_fare_rules", operator_id=cmd.operator_id)  # integrator: its own
            rulebook = d.FareRulebook.from_doc(cmd.rules)
            if rulebook.operator_id != cmd.operator_id:
                raise Refused("operator_mismatch", "rules.operator_id differs from operator_id")
            refusal = rules_update_refusal(await store.rules_version(uc.tx, cmd.operator_id),
                                           cmd.version, store.rules_digest(rulebook))
            if refusal is not None:
                raise Refused(*refusal)
            await store.save_rules(uc.tx, rulebook, cmd.version)
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_set_concession(self, msg: Inbound[wire.SetConcession]) -> None:
        """Grant or change a student concession on every card of the contract. Rides already
        charged are repriced only if a later tap of their week arrives (see the domain)."""
        cmd = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            uc.authorize("set_concession")
            try:
                eligibility = d.ConcessionEligibility(date.fromisoformat(cmd.valid_until))
            except ValueError:
                raise Refused("invalid_date",
                              f"{cmd.valid_until} is not a calendar date") from None
            cards = await store.cards_of(tx, cmd.contract)
            if not cards:
                raise Refused("unknown_contract", "no card is issued under this contract")
            for school_id in {c.school_id for c in cards}:  # school staff: their own only
                uc.authorize("set_concession", school_id=school_id)
            card_uids = [c.card_uid for c in cards]
            await store.set_card_concession(tx, card_uids, eligibility)
            for travel in await store.travels_of_cards(tx, card_uids):
                loaded = travel.version
                travel.set_concession(eligibility)
                await store.save_travel(tx, travel, loaded)
            tx.reply(CommandAccepted(request_id=cmd.request_id))

    async def on_get_rides(self, msg: Inbound[wire.GetRides]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            uc.authorize("view", contract=q.contract)
            for school_id in {c.school_id for c in await store.cards_of(tx, q.contract)}:
                uc.authorize("view", contract=q.contract, school_id=school_id)
            lines = await store.rides_of(tx, q.contract, q.date_from, q.date_to)
            scope = paging.scope_of(contract=q.contract, date_from=q.date_from,
                                    date_to=q.date_to)
            try:
                lines, following = paging.page(lines, _ride_key, limit=q.limit,
                                               cursor=q.cursor, scope=scope)
            except paging.InvalidCursor as exc:
                raise Refused("invalid_cursor", str(exc)) from None
            tx.reply(wire.RidesReply(contract=q.contract,
                                     rides=[outbound.ride_line(line) for line in lines],
                                     csv=d.render_csv(lines) if q.csv else None,
                                     next_cursor=following))

    # --- ticks ---------------------------------------------------------------------------------

    async def remind_concessions(self) -> None:
        """Emit ConcessionExpiring for concessions entering their reminder period (once per
        expiry date; the domain keeps the mark, the message id is deterministic)."""
        now: datetime = self.rt.clock()
        horizon = await store.max_reminder_days(self.rt.db)
        ids = await store.reminder_candidates(
            self.rt.db, (now - timedelta(days=1)).date(),
            (now + timedelta(days=horizon + 1)).date(), self.settings.reminder_batch)
        for aggregate_id in ids:
            async with self.rt.transaction(None) as tx:
                travel = await store.load_travel(tx, aggregate_id)
                rulebook = await store.rulebook(tx, travel.operator_id) if travel else None
                card = await store.card(tx, travel.card_uid) if travel else None
                if travel is None or rulebook is None or card is None:
                    continue
                loaded = travel.version
                outcome = travel.remind_concession_expiry(rulebook, tx.now)
                await self._commit(tx, travel, loaded, outcome, card.contract)
        await self._remind_cards_that_never_rode(now, horizon)

    async def _remind_cards_that_never_rode(self, now: datetime, horizon: int) -> None:
        """A card with a concession and no ride has no travel to remind it: the card does
        (see ``domain.reminders``). A card that rode is left to its travel, and marked so
        that it is not looked at again for this expiry date."""
        uids = await store.card_reminder_candidates(
            self.rt.db, (now - timedelta(days=1)).date(),
            (now + timedelta(days=horizon + 1)).date(), self.settings.reminder_batch)
        for card_uid in uids:
            async with self.rt.transaction(None) as tx:
                card = await store.card_reminder(tx, card_uid)
                if card is None or card.concession is None:
                    continue
                until = card.concession.valid_until
                if card.rode:
                    await store.mark_card_reminded(tx, card_uid, until)
                    continue
                today = tx.now.astimezone(ZoneInfo(card.school_tz)).date()
                reminder = d.remind_unridden_card(card_uid, card.concession, card.reminded_for,
                                                  today, horizon, tx.now)
                if reminder is None:
                    continue
                await store.mark_card_reminded(tx, card_uid, until)
                self._emit(tx, [reminder], card.contract)


def _ride_key(line: d.RideLine) -> paging.Key:
    return paging.instant(line.tapped_at), line.ride_id
