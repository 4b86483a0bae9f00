"""notify's use cases: load the guardians (and the child's journey day), one domain call
(routing), commit messages + journey + delivery records + inbox in one transaction. Delivery
itself happens later, in the sender tick (services/notify/sender.py), from the stored
message state; handlers never call a provider.

Every handler is of the runtime's one shape (``services/runtime/usecase.py``): a domain
rejection (an event id reused for another fact, an invalid phone) dead-letters the event with
the domain's reason code; app commands (preferences, push token, journal) answer on the reply
topic, with an error reply when the token does not allow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter

from contracts import access, auth, transit, wallet
from contracts import notify as wire
from contracts.auth import Role
from contracts.envelope import CommandAccepted
from services.notify import domain as d
from services.notify import inbound, outbound, store
from services.notify.settings import Settings
from services.runtime import paging
from services.runtime.consumer import Inbound
from services.runtime.logs import get_logger
from services.runtime.mongo import Transaction
from services.runtime.service import Runtime
from services.runtime.tokens import TokenError
from services.runtime.usecase import Case, Refused, UseCases

log = get_logger("schoolcard.notify")
CODES_REFUSED = Counter("schoolcard_notify_codes_refused_total", "One-time codes not sent: "
                        "number abroad, number or service over its quota", ["reason"])

DIGEST_KINDS = frozenset({d.NotificationKind.CHILD_LEFT, d.NotificationKind.CANTEEN_PURCHASE,
                          d.NotificationKind.RIDE, d.NotificationKind.TOP_UP})
"""What "daily digest" folds in when a parent turns it on: routine news, never alerts."""


class Handlers:
    def __init__(self, rt: Runtime, wake_sender: Callable[[], None]) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self.wake_sender = wake_sender
        self.case = UseCases(rt, refusals=(d.NotifyError,))
        self.code_policy = d.CodePolicy(
            tuple(self.settings.sms_code_countries), self.settings.sms_codes_per_number_hour,
            self.settings.sms_codes_per_number_day, self.settings.sms_codes_per_minute)

    @asynccontextmanager
    async def _case(self, msg: Inbound) -> AsyncIterator[Case[Any]]:
        """The use case of ``msg``; once it commits, the sender looks for due messages."""
        async with self.case(msg) as uc:
            uc.tx.on_commit(self.wake_sender)
            yield uc

    @asynccontextmanager
    async def _tx(self, msg: Inbound) -> AsyncIterator[Transaction]:
        async with self._case(msg) as uc:
            yield uc.tx

    # -- shared steps ---------------------------------------------------------------------------

    async def _queue(self, tx: Transaction, messages: list[d.Message]) -> None:
        """Store what routing produced: a key already stored is the same message again
        (``admit`` keeps the stored one, delivery state untouched) or a conflict (rejected).
        The new in-app messages go out with the commit (``domain.in_app``)."""
        existing = await store.existing_messages(tx, [m.dedupe_key for m in messages])
        new = [m for m in messages if d.admit(existing.get(m.dedupe_key), m) is m]
        shown = d.deliver_in_app(new, tx.now)  # in-app messages are delivered as stored
        await store.insert_messages(tx, new)
        for m in new:
            deferred = outbound.queued(m, tx.now)
            if deferred is not None:
                topic, key, record, mid = deferred
                tx.emit(topic, key, record, message_id=mid)
        for e in shown:
            for to, account, message, message_id in outbound.in_app(e):
                tx.emit(to, account, message, message_id=message_id)

    async def _notify_child(self, msg: Inbound, event: d.NotificationEvent | None) -> None:
        async with self._tx(msg) as tx:
            if event is None:
                return
            guardians = await store.guardians_of(tx, event.contract or "")
            await self._queue(tx, d.messages_for(event, guardians, tx.now))

    async def _notify_account(self, msg: Inbound, event: d.NotificationEvent) -> None:
        async with self._tx(msg) as tx:
            guardian = await store.load_guardian(tx, event.account_id or "")
            guardians = [guardian] if guardian is not None else []
            await self._queue(tx, d.messages_for(event, guardians, tx.now))

    async def _zone(self, tx: Transaction, contract: str) -> str:
        """The time zone the child's days are counted in: the school's (wallet's
        AccountOpened), else NOTIFY_SCHOOL_TIME_ZONE."""
        return await store.school_zone(tx, contract) or self.settings.school_time_zone

    async def _journey(self, tx: Transaction, contract: str,
                       at: datetime) -> tuple[d.JourneyDay, int | None]:
        tz = await self._zone(tx, contract)
        key = d.journey_key(contract, d.journey_day_of(at, tz))
        day = await store.load_journey(tx, key)
        if day is None:
            return d.JourneyDay.open(contract, at, tz), None
        return day, day.version

    async def _with_journey(self, msg: Inbound, event: d.NotificationEvent,
                            entry: d.TimelineEntry, *, arrival: bool = False) -> None:
        """Record the step in the child's day, then notify; a turnstile entry that is the day's
        first becomes the "arrived safely" message instead of a plain entry notice."""
        async with self._tx(msg) as tx:
            contract = event.contract or ""
            guardians = await store.guardians_of(tx, contract)
            day, loaded = await self._journey(tx, contract, entry.at)
            caused = day.record(entry)
            if arrival:
                event = d.entry_notification(day, entry.event_id, event)
            await store.save_journey(tx, day, loaded)
            events = [event, *(d.notification_for(e) for e in caused
                               if isinstance(e, d.NotArrivedAlertRaised))]
            await self._queue(tx, [m for e in events
                                   for m in d.messages_for(e, guardians, tx.now)])

    async def _guardian(self, tx: Transaction, account_id: str) -> tuple[d.Guardian, int | None]:
        guardian = await store.load_guardian(tx, account_id)
        if guardian is None:
            return d.Guardian(account_id, time_zone=self.settings.school_time_zone), None
        return guardian, guardian.version

    # -- auth: the guardian projection and account alerts -------------------------------------

    async def on_contacts(self, msg: Inbound[auth.GuardianContacts]) -> None:
        c = msg.message
        async with self._tx(msg) as tx:
            if c.phone is None and c.email is None:
                await store.delete_guardian(tx, c.account_id)  # tombstone: account closed
                return
            guardian, loaded = await self._guardian(tx, c.account_id)
            guardian.set_contacts(phone=c.phone, email=c.email,
                                  has_push_token=guardian.has_push_token)
            guardian.set_locale(d.Locale(c.locale.value), c.time_zone)
            await store.save_guardian(tx, guardian, loaded)

    async def on_guardian_linked(self, msg: Inbound[auth.GuardianLinked]) -> None:
        e = msg.message
        async with self._tx(msg) as tx:
            guardian, loaded = await self._guardian(tx, e.account_id)
            guardian.link_child(e.contract, d.GuardianRole(e.role.value))
            await store.save_guardian(tx, guardian, loaded)
            await store.sync_guardianships(tx, guardian)

    async def on_guardian_removed(self, msg: Inbound[auth.GuardianRemoved]) -> None:
        e = msg.message
        async with self._tx(msg) as tx:
            guardian, loaded = await self._guardian(tx, e.account_id)
            guardian.unlink_child(e.contract)
            await store.save_guardian(tx, guardian, loaded)
            await store.sync_guardianships(tx, guardian)

    async def on_account_closed(self, msg: Inbound[auth.AccountClosed]) -> None:
        e = msg.message
        async with self._tx(msg) as tx:
            await store.delete_guardian(tx, e.account_id)

    async def on_login(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.login(msg.message))

    async def on_password_changed(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.password_changed(msg.message))

    async def on_account_locked(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.account_locked(msg.message))

    async def on_account_unlocked(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.account_unlocked(msg.message))

    async def on_second_factor_disabled(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.second_factor_disabled(msg.message))

    async def on_registration_attempted(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.registration_attempted(msg.message))

    async def on_refresh_token_reused(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.refresh_token_reused(msg.message))

    async def on_child_link_refused(self, msg: Inbound) -> None:
        await self._notify_account(msg, inbound.child_link_refused(msg.message))

    async def on_guardian_invited(self, msg: Inbound) -> None:
        """The invitee is told on their own account's contacts (GuardianContacts), whether or
        not they guard any child yet."""
        await self._notify_account(msg, inbound.guardian_invited(msg.message))

    async def on_session_ended(self, msg: Inbound[auth.SessionEnded]) -> None:
        """The push tokens registered from the ended sessions go (``domain.devices``); the
        guardian without any left gets SMS or e-mail instead of push. The end is kept, so the
        access token of an ended session registers no token afterwards."""
        end = inbound.session_end(msg.message)
        async with self._tx(msg) as tx:
            await store.save_session_end(tx, end)
            ended, left = d.tokens_ended(end, await store.push_token_sessions(tx, end.account_id))
            await store.delete_push_tokens(tx, ended)
            guardian = await store.load_guardian(tx, end.account_id)
            if guardian is not None:  # staff accounts have sessions, not guardians
                loaded = guardian.version
                guardian.set_has_push_token(left)
                await store.save_guardian(tx, guardian, loaded)

    async def on_code_requested(self, msg: Inbound[wire.OneTimeCodeRequested]) -> None:
        """Send the code unless the number is abroad or over its quota, or the service over
        its own (``domain.code_quota``): then nothing is sent, counted and logged (the
        number is not)."""
        e = msg.message
        async with self._tx(msg) as tx:
            try:
                request = inbound.code_request(e, tx.now)
            except KeyError:
                raise Refused("unknown_purpose", f"purpose {e.purpose!r} is not known") from None
            number, minute = await store.code_counts(tx, e.address, tx.now)
            loaded = number.version, minute.version
            refusal = d.admit_code(e.address, tx.now, number, minute, self.code_policy)
            if refusal is not None:
                CODES_REFUSED.labels(refusal.value).inc()
                log.warning("one-time code not sent", reason=refusal.value,
                            purpose=e.purpose, request_id=e.request_id)
                return
            await store.save_code_counts(tx, number, loaded[0], minute, loaded[1])
            await self._queue(tx, [d.route_one_time_code(request, tx.now)])

    # -- access -----------------------------------------------------------------------------------

    async def on_entered(self, msg: Inbound) -> None:
        await self._with_journey(msg, *inbound.entered(msg.message), arrival=True)

    async def on_left(self, msg: Inbound) -> None:
        await self._with_journey(msg, *inbound.left(msg.message))

    async def on_manual_entry(self, msg: Inbound) -> None:
        await self._with_journey(msg, *inbound.manual_entry(msg.message))

    async def on_late(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.late(msg.message))

    async def on_not_in_at_lesson_start(self, msg: Inbound) -> None:
        """Lessons began without the child: if the child rode toward school that morning
        (now, or a ride uploaded later), the guardians get the "did not arrive" alert, once
        per child and day."""
        e: access.NotInSchoolAtLessonStart = msg.message
        async with self._tx(msg) as tx:
            day, loaded = await self._journey(tx, e.contract, e.lesson_start_at)
            alert = day.lessons_began_without_entry(d.parse_hhmm(e.lesson_start), e.school_id)
            await store.save_journey(tx, day, loaded)
            if alert is not None:
                guardians = await store.guardians_of(tx, e.contract)
                await self._queue(tx, d.messages_for(d.notification_for(alert), guardians,
                                                     tx.now))

    async def on_absent(self, msg: Inbound[access.AbsenceDetected]) -> None:
        e = msg.message
        await self._notify_child(msg, inbound.absent(e, msg.envelope.time))

    # -- wallet and transit -----------------------------------------------------------------------

    async def on_sale_posted(self, msg: Inbound) -> None:
        await self._with_journey(msg, *inbound.sale_posted(msg.message))

    async def on_sale_declined(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.sale_declined(msg.message))

    async def on_fare_declined(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.fare_declined(msg.message))

    async def on_top_up(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.top_up(msg.message))

    async def on_low_balance(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.low_balance(msg.message))

    async def on_card_blocked(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.card_blocked(msg.message))

    async def on_grace_meal(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.grace_meal(msg.message))

    async def on_dispute_opened(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.dispute_opened(msg.message))

    async def on_dispute_resolved(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.dispute_resolved(msg.message))

    async def on_sale_line_refunded(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.sale_line_refunded(msg.message))

    async def on_fare_refunded(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.fare_refunded(msg.message))

    async def on_debt_settled(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.debt_settled(msg.message))

    async def on_top_up_rejected(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.top_up_rejected(msg.message, msg.envelope.time))

    async def on_auto_top_up_failed(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.auto_top_up_failed(msg.message))

    async def on_application_status_changed(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.application_status_changed(msg.message))

    async def on_concession_expiring(self, msg: Inbound) -> None:
        await self._notify_child(msg, inbound.concession_expiring(msg.message,
                                                                  msg.envelope.time))

    async def on_receipt(self, msg: Inbound[wallet.ReceiptIssued]) -> None:
        e = msg.message
        event = inbound.receipt(e)
        async with self._tx(msg) as tx:
            guardians = await store.guardians_of(tx, e.contract)
            await self._queue(tx, [d.route_receipt(event, e.email, guardians, tx.now)])

    async def on_ride(self, msg: Inbound[transit.RideRecorded]) -> None:
        e = msg.message
        await self._with_journey(msg, *inbound.ride(e))

    # -- app commands and queries (the caller's own account only) -------------------------------

    @staticmethod
    def _caller(uc: Case[Any], account_id: str, *, support: bool = False) -> None:
        """The token's holder must be ``account_id`` (or, with ``support``, support staff)."""
        if uc.holder.sub != account_id and not (support and uc.holder.role is Role.SUPPORT):
            raise TokenError("forbidden", "a guardian may only act on their own notifications")

    async def on_set_preferences(self, msg: Inbound[wire.SetPreferences]) -> None:
        c = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, c.account_id, support=True)
            guardian, loaded = await self._guardian(uc.tx, c.account_id)
            try:
                self._apply_preferences(guardian, c)
            except (ValueError, d.NotifyError) as exc:
                raise Refused("invalid_preferences", str(exc)[:200]) from None
            await store.save_guardian(uc.tx, guardian, loaded)
            uc.tx.reply(CommandAccepted(request_id=c.request_id))

    @staticmethod
    def _apply_preferences(guardian: d.Guardian, c: wire.SetPreferences) -> None:
        for kind_name, wanted in (c.channels or {}).items():
            kind = d.NotificationKind(kind_name)  # ValueError: unknown kind
            for channel in d.Channel:
                guardian.set_preference(kind, channel, wire.Channel(channel.value) in wanted)
        if c.quiet_from is not None and c.quiet_to is not None:
            guardian.set_quiet_hours(d.QuietHours.parse(c.quiet_from, c.quiet_to))
        if c.daily_digest is not None:
            guardian.set_digest(enabled=c.daily_digest, at=guardian.digest_time,
                                kinds=DIGEST_KINDS if c.daily_digest else frozenset())
        guardian.set_services(sms_informer=c.sms_informer, push=c.push)

    async def on_register_push_token(self, msg: Inbound[wire.RegisterPushToken]) -> None:
        """A guardian registers their own device (support may not: a token registered for
        someone else would receive their child's news), from the session of the access token:
        the push token ends with it, and a session already ended registers nothing
        (``session_ended``)."""
        c = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, c.account_id)
            sid = uc.holder.sid
            d.require_live_session(await store.session_ends(uc.tx, c.account_id, sid), sid,
                                   datetime.fromtimestamp(uc.holder.iat, UTC))
            guardian, loaded = await self._guardian(uc.tx, c.account_id)
            guardian.set_has_push_token(True)
            await store.add_push_token(uc.tx, c.account_id, c.token.get_secret_value(),
                                       c.platform, sid)
            await store.save_guardian(uc.tx, guardian, loaded)
            uc.tx.reply(CommandAccepted(request_id=c.request_id))

    async def on_get_journal(self, msg: Inbound[wire.GetJournal]) -> None:
        q = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, q.account_id, support=True)
            journal_filter = _journal_filter(q)
            messages = await store.journal(uc.tx, q.account_id)
            entries = d.select_journal(messages, journal_filter, uc.tx.now)
            try:
                entries, following = paging.page(
                    entries, _journal_key, limit=q.limit, cursor=q.cursor, descending=True,
                    scope=_journal_scope(q))
            except paging.InvalidCursor as exc:
                raise Refused("invalid_cursor", str(exc)) from None
            uc.tx.reply(wire.JournalReply(lines=[_journal_line(line, status)
                                                 for line, status in entries],
                                          next_cursor=following))

    async def on_get_journey(self, msg: Inbound[wire.GetJourney]) -> None:
        """The journey of the day asked, or of today in the school's time zone."""
        q = msg.message
        async with self._case(msg) as uc:
            uc.authorize("view", contract=q.contract)
            tz = await self._zone(uc.tx, q.contract)
            today = d.journey_day_of(uc.tx.now, tz)
            asked = date.fromisoformat(q.date) if q.date else today
            day = await store.load_journey(uc.tx, d.journey_key(q.contract, asked))
            if day is not None and day.school_id is not None:
                uc.authorize("view", contract=q.contract, school_id=day.school_id)
            uc.tx.reply(_journey_reply(q.contract, asked, today, tz, day))

    async def on_account_opened(self, msg: Inbound[wallet.AccountOpened]) -> None:
        """The child's school time zone, for counting the child's days."""
        e = msg.message
        async with self.case(msg) as uc:
            await store.save_school_zone(uc.tx, e.contract,
                                         e.time_zone or self.settings.school_time_zone)


    # -- preferences read back, push devices -----------------------------------------------------

    async def on_get_preferences(self, msg: Inbound[wire.GetPreferences]) -> None:
        q = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, q.account_id, support=True)
            guardian, _ = await self._guardian(uc.tx, q.account_id)
            uc.tx.reply(_preferences_reply(d.preferences_of(guardian)))

    async def on_list_push_tokens(self, msg: Inbound[wire.ListPushTokens]) -> None:
        q = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, q.account_id)
            devices = await store.push_devices(uc.tx, q.account_id)
            uc.tx.reply(_push_tokens_reply(q.account_id,
                                           d.devices_in_use_order(devices.values())))

    async def on_remove_push_token(self, msg: Inbound[wire.RemovePushToken]) -> None:
        """The guardian stops pushes to one device; the last one gone, routing picks SMS or
        e-mail as the preferences allow. A retry (same request_id, a new message) is answered
        the same: the removal is remembered a day."""
        c = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, c.account_id)
            devices = await store.push_devices(uc.tx, c.account_id)
            done = await store.push_removal(uc.tx, c.account_id, c.request_id)
            key, left = d.plan_removal(done, devices, c.token_id)
            if key is not None:
                await store.delete_push_tokens(uc.tx, [key])
                await store.save_push_removal(uc.tx, c.account_id, c.request_id, c.token_id)
            guardian = await store.load_guardian(uc.tx, c.account_id)
            if guardian is not None:
                loaded = guardian.version
                guardian.set_has_push_token(left)
                await store.save_guardian(uc.tx, guardian, loaded)
            uc.tx.reply(CommandAccepted(request_id=c.request_id))

    # -- support requests -----------------------------------------------------------------------

    async def _ticket(self, uc: Case[Any], ticket_id: str) -> d.SupportTicket:
        """The request, which the holder must own (a parent) or be allowed to answer
        (support; the school admin of its school). Someone else's request is "unknown", so
        ids cannot be probed."""
        ticket = await store.load_ticket(uc.tx, ticket_id)
        if ticket is None:
            raise d.NotifyError(d.NotifyRejection.UNKNOWN_SUPPORT_REQUEST, ticket_id)
        if uc.holder.role is Role.PARENT:
            if uc.holder.sub != ticket.account_id:
                raise d.NotifyError(d.NotifyRejection.UNKNOWN_SUPPORT_REQUEST, ticket_id)
        else:
            uc.authorize("answer_support", school_id=ticket.school_id)
        return ticket

    async def on_open_support_request(self, msg: Inbound[wire.OpenSupportRequest]) -> None:
        """Answered with the request; a retry (same request_id) answers the same request, the
        same id with another question is refused (support_request_conflict)."""
        c = msg.message
        async with self._case(msg) as uc:
            self._caller(uc, c.account_id)
            if c.contract is not None:
                uc.authorize("view", contract=c.contract)
            opened = d.SupportTicket.open(
                account_id=c.account_id, request_id=c.request_id, topic=c.topic.value,
                text=c.text, contract=c.contract, school_id=c.school_id, at=uc.tx.now)
            stored = await store.load_ticket(uc.tx, opened.ticket_id)
            if stored is None:
                await store.save_ticket(uc.tx, opened, None)
            elif not stored.same_request(opened):
                raise d.NotifyError(d.NotifyRejection.SUPPORT_REQUEST_CONFLICT,
                                    "this request_id opened another request")
            uc.tx.reply(_ticket_reply(stored or opened))

    async def on_answer_support_request(self, msg: Inbound[wire.AnswerSupportRequest]) -> None:
        """Staff answer; the parent is told (``support_answered``) on their channels."""
        c = msg.message
        async with self._case(msg) as uc:
            ticket = await self._ticket(uc, c.ticket_id)
            if uc.holder.role is Role.PARENT:
                raise TokenError("forbidden", "support and school admins answer requests")
            loaded = ticket.version
            ticket.answer(post_id=f"{ticket.ticket_id}:{c.request_id}",
                          author=d.author_of(uc.holder.role.value), text=c.text,
                          at=uc.tx.now, close=c.close)
            await store.save_ticket(uc.tx, ticket, loaded)
            guardian = await store.load_guardian(uc.tx, ticket.account_id)
            for event in ticket.pull_events():
                await self._queue(uc.tx, list(d.route(
                    d.answer_notification(event), [guardian] if guardian else [],
                    uc.tx.now).messages))
            uc.tx.reply(_ticket_reply(ticket))

    async def on_close_support_request(self, msg: Inbound[wire.CloseSupportRequest]) -> None:
        c = msg.message
        async with self._case(msg) as uc:
            ticket = await self._ticket(uc, c.ticket_id)
            loaded = ticket.version
            ticket.close(uc.tx.now)
            await store.save_ticket(uc.tx, ticket, loaded)
            uc.tx.reply(_ticket_reply(ticket))

    async def on_get_support_request(self, msg: Inbound[wire.GetSupportRequest]) -> None:
        q = msg.message
        async with self._case(msg) as uc:
            uc.tx.reply(_ticket_reply(await self._ticket(uc, q.ticket_id)))

    async def on_get_support_requests(self, msg: Inbound[wire.GetSupportRequests]) -> None:
        """A parent's own requests, or staff's queue: support every school's, a school admin
        their school's."""
        q = msg.message
        async with self._case(msg) as uc:
            school_id = None
            if q.account_id is not None and uc.holder.role is Role.PARENT:
                self._caller(uc, q.account_id)
            else:
                school_id = uc.holder.school_id if uc.holder.role is not Role.SUPPORT else None
                uc.authorize("answer_support", school_id=school_id)
            found = await store.tickets(
                uc.tx, account_id=q.account_id, school_id=school_id,
                status=None if q.status is None else q.status.value, limit=q.limit)
            uc.tx.reply(wire.SupportRequestsReply(requests=[_summary(t) for t in found]))


def _journey_reply(contract: str, asked: date, today: date, tz: str,
                   day: d.JourneyDay | None) -> wire.JourneyReply:
    said = {"contract": contract, "date": asked.isoformat(), "today": today.isoformat(),
            "time_zone": tz}
    if day is None:
        return wire.JourneyReply(**said)
    return wire.JourneyReply(
        **said, arrived_at=day.arrived_at, not_arrived_alert_at=day.alerted_at,
        steps=[wire.JourneyStep(at=e.at, kind=e.kind.value, place=e.place, amount=e.amount,
                                detail=e.detail) for e in day.timeline])


def _journal_line(line: d.JournalLine, status: str) -> Any:
    return wire.JournalLine(at=line.at, kind=line.kind.value, channel=wire.Channel(line.channel),
                            status=status, text=line.text)


def _journal_key(entry: tuple[d.JournalLine, str]) -> paging.Key:
    line, _ = entry
    return paging.instant(line.at), line.dedupe_key


def _journal_filter(q: wire.GetJournal) -> d.JournalFilter:
    try:
        kinds = frozenset(d.NotificationKind(k) for k in q.kinds or ())
    except ValueError:
        raise Refused("invalid_filter", "a kind in kinds is not a notification kind") from None
    return d.JournalFilter(kinds=kinds,
                           channel=None if q.channel is None else d.Channel(q.channel.value),
                           status=None if q.status is None else q.status.value,
                           contract=q.contract, since=q.since, until=q.until)


def _journal_scope(q: wire.GetJournal) -> str:
    """A cursor belongs to the account and the filters it was handed out with."""
    if not (q.kinds or q.channel or q.status or q.contract or q.since or q.until):
        return paging.scope_of(account_id=q.account_id)  # cursors from before the filters
    return paging.scope_of(account_id=q.account_id, kinds=sorted(q.kinds or ()),
                           channel=q.channel, status=q.status, contract=q.contract,
                           since=q.since, until=q.until)


def _preferences_reply(view: d.PreferencesView) -> wire.PreferencesReply:
    quiet = view.quiet_hours
    return wire.PreferencesReply(
        account_id=view.account_id,
        channels={k.value: [wire.Channel(c.value) for c in chs]
                  for k, chs in view.channels.items()},
        always_on=[k.value for k in view.always_on],
        quiet_from=None if quiet is None else d.format_hhmm(quiet[0]),
        quiet_to=None if quiet is None else d.format_hhmm(quiet[1]),
        time_zone=view.time_zone, daily_digest=view.daily_digest,
        digest_at=d.format_hhmm(view.digest_at),
        digest_kinds=[k.value for k in view.digest_kinds],
        sms_informer=view.sms_informer, push=view.push)


def _push_tokens_reply(account_id: str, devices: list[d.PushDevice]) -> wire.PushTokensReply:
    return wire.PushTokensReply(account_id=account_id, tokens=[
        wire.PushTokenInfo(token_id=x.token_id, fingerprint=x.fingerprint,
                           platform=x.platform, registered_at=x.registered_at,
                           last_used_at=x.last_used_at) for x in devices])


def _summary(t: d.SupportTicket) -> wire.SupportRequestSummary:
    return wire.SupportRequestSummary(
        ticket_id=t.ticket_id, account_id=t.account_id, topic=wire.SupportTopic(t.topic),
        status=wire.SupportStatus(t.status.value), contract=t.contract, school_id=t.school_id,
        opened_at=t.opened_at, updated_at=t.updated_at)


def _ticket_reply(t: d.SupportTicket) -> wire.SupportRequestReply:
    return wire.SupportRequestReply(request=_summary(t), thread=[
        wire.SupportMessage(at=p.at, author=p.author.value, text=p.text) for p in t.thread])
