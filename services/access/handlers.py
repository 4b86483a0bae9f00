"""Access use cases, each of the runtime's one shape (``services/runtime/usecase.py``):
authorize -> load -> one domain call -> commit through the unit of work -> reply.

A refusal (``AccessDomainError``, ``Refused``, a token refused) is dead-lettered with its code
for integrator input that cannot be decided (future or ancient tap, tap id reused with other
data) and answered with an error reply for an app command. Denied taps are normal results: a
GateDecision with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from contracts import access as wire
from contracts import integrations as integ
from contracts import wallet as wallet_wire
from contracts.auth import Role
from contracts.catalog import topic_for
from contracts.envelope import CommandAccepted
from services.access import domain as d
from services.access import outbound, store
from services.access.settings import Settings
from services.runtime import paging
from services.runtime.consumer import Inbound
from services.runtime.logs import get_logger
from services.runtime.mongo import Transaction
from services.runtime.service import Runtime
from services.runtime.usecase import Case, Refused, UseCases, explain_refusal

log = get_logger("schoolcard.access")
GATE_TAPS = topic_for(integ.GateTapped).name


def _explain(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, d.AccessDomainError):
        return exc.reason.value, exc.detail
    return explain_refusal(exc)


def _emit(tx: Transaction, events: Iterable[object], zone: ZoneInfo | None,
          cause_id: str, *, replay: bool = False) -> None:
    context = outbound.Context(tx.now, zone, cause_id)
    for event in events:
        wired = outbound.to_wire(event, context)
        if wired is not None:
            topic, key, message, mid = wired
            tx.emit(topic, key, message, message_id=mid, replay=replay)


# --- wire -> domain ---------------------------------------------------------------------------

def _tap(m: integ.GateTapped) -> d.GateTap:
    return d.GateTap(m.tap_id, m.gate_id, m.school_id, m.card_uid, d.Direction(m.direction.value),
                     m.tapped_at)


def _issued(m: integ.CardIssued) -> d.CardIssued:
    return d.CardIssued(f"issued:{m.contract}:{m.card_uid}", m.card_uid, m.contract, m.school_id,
                        m.class_name, m.issued_at)


def _reissued(m: integ.CardReissued) -> d.CardIssued:
    return d.CardIssued(f"reissued:{m.old_contract}:{m.new_contract}:{m.new_card_uid}",
                        m.new_card_uid, m.new_contract, m.school_id, m.class_name, m.reissued_at)


def _virtual(m: integ.VirtualCardIssued) -> d.CardIssued:
    return d.CardIssued(f"virtual:{m.contract}:{m.card_uid}", m.card_uid, m.contract,
                        m.school_id, m.class_name, m.issued_at)


def _schedule(m: wire.SetSchoolSchedule) -> d.SetSchoolSchedule:
    t = time.fromisoformat
    return d.SetSchoolSchedule(m.request_id, d.ScheduleData(
        school_id=m.school_id, timezone=m.time_zone,
        weekdays=tuple(d.WeekdayHours(h.weekday, t(h.opens), t(h.closes), t(h.first_lesson))
                       for h in m.hours),
        absence_cutoff=t(m.absence_cutoff),
        holidays=frozenset(date.fromisoformat(x) for x in m.holidays),
        sessions=tuple(d.Session(s.name, d.SessionKind(s.kind), s.weekday, t(s.start), t(s.end),
                                 s.group) for s in m.sessions)))


def _manual(m: wire.RecordManualEntry) -> d.ManualEntry:
    return d.ManualEntry(m.request_id, m.school_id, m.contract, m.guard_id, m.reason, m.at)


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def _month(m: d.StudentSummary) -> wire.MonthStats:
    return wire.MonthStats(month=m.start.strftime("%Y-%m"), date_from=m.start.isoformat(),
                           date_to=m.end.isoformat(), lesson_days=m.lesson_days,
                           days_present=m.days_present, late_count=m.late_count,
                           absent_days=[x.isoformat() for x in m.absent_days],
                           average_arrival=_hhmm(m.average_arrival))


def _log_key(day: d.EntryLogDay) -> paging.Key:
    return (day.row.day.toordinal(),)


def _log_day(day: d.EntryLogDay) -> wire.EntryLogDay:
    row = day.row
    return wire.EntryLogDay(
        local_date=row.day.isoformat(), arrived_at=row.arrived_at, left_at=row.left_at,
        late=row.late, absent=row.absent, passage_count=day.passage_count,
        passages=[wire.EntryPassage(at=p.at, direction=p.direction.value, source=p.source.value,
                                    gate_id=p.gate_id) for p in day.passages])


def _line(row: d.RegisterRow) -> wire.RegisterLine:
    return wire.RegisterLine(contract=row.contract, arrived_at=row.arrived_at,
                             left_at=row.left_at, late=row.late, absent=row.absent)


class Handlers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.settings: Settings = rt.settings  # type: ignore[assignment]
        self.case = UseCases(rt, refusals=(d.AccessDomainError,), explain=_explain)

    # --- gate taps ---------------------------------------------------------------------------

    async def on_gate_tapped(self, msg: Inbound) -> None:
        """Decide a tap once per tap id; a retried tap (new message id) gets its recorded
        decision again under the same message id."""
        tap = _tap(msg.message)
        async with self.case(msg) as uc:
            tx = uc.tx
            previous = await store.load_tap(tx, tap.tap_id)
            card = await store.load_card(tx, tap.card_uid) if previous is None else None
            schedule = await store.load_schedule(tx, tap.school_id) if previous is None else None
            key = d.day_key_for_tap(tap, card, schedule)
            day = await store.load_day(tx, key) if key else None
            loaded = day.version if day is not None else None
            outcome = d.decide_tap(tap, card=card, schedule=schedule, day=day,
                                   previous=previous, now=tx.now)
            zone = schedule.zone if schedule is not None else None
            if outcome.replayed:
                _emit(tx, [outcome.record.decided_event()], zone, msg.inbox_id, replay=True)
                return
            await store.insert_tap(tx, outcome.record)
            if outcome.day is not None:
                await store.save_day(tx, outcome.day, loaded)
            _emit(tx, outcome.events, zone, msg.inbox_id)

    # --- card projection ---------------------------------------------------------------------

    async def on_card_issued(self, msg: Inbound) -> None:
        fact = _issued(msg.message)
        async with self.case(msg) as uc:
            tx = uc.tx
            link = await store.load_contract(tx, fact.contract)
            card = await store.load_card(tx, fact.card_uid)
            versions = (link.version if link else None, card.version if card else None)
            outcome = d.issue_card(link, card, fact)
            await self._save_contract(tx, outcome, versions[0], {fact.card_uid: versions[1]})
            _emit(tx, outcome.events, None, msg.inbox_id)

    async def on_card_reissued(self, msg: Inbound[integ.CardReissued]) -> None:
        m = msg.message
        fact = _reissued(m)
        async with self.case(msg) as uc:
            tx = uc.tx
            old_link = await store.load_contract(tx, m.old_contract)
            old_cards = await store.cards_of_contract(tx, m.old_contract)
            new_link = await store.load_contract(tx, m.new_contract)
            new_card = await store.load_card(tx, m.new_card_uid)
            cards: dict[str, int | None] = {c.card_uid: c.version for c in old_cards}
            cards[m.new_card_uid] = new_card.version if new_card else None
            links = (old_link.version if old_link else None,
                     new_link.version if new_link else None)
            issued, retired = d.reissue_card(old_link, old_cards, new_link, new_card, fact,
                                             m.old_contract)
            await self._save_contract(tx, issued, links[1], cards)
            await self._save_contract(tx, retired, links[0], cards)
            _emit(tx, issued.events + retired.events, None, msg.inbox_id)

    async def on_virtual_card_issued(self, msg: Inbound[integ.VirtualCardIssued]) -> None:
        m = msg.message
        fact = _virtual(m)
        async with self.case(msg) as uc:
            tx = uc.tx
            link = await store.load_contract(tx, m.contract)
            card = await store.load_card(tx, m.card_uid)
            replaced = (await store.load_card(tx, m.replaces_card_uid)
                        if m.replaces_card_uid else None)
            versions: dict[str, int | None] = {
                c.card_uid: c.version for c in (card, replaced) if c is not None}
            loaded = link.version if link else None
            outcome = d.issue_virtual_card(link, card, replaced, fact, m.replaces_card_uid)
            await self._save_contract(tx, outcome, loaded, versions)
            _emit(tx, outcome.events, None, msg.inbox_id)

    async def on_card_blocked(self, msg: Inbound[wallet_wire.CardBlocked]) -> None:
        m = msg.message
        if m.card_uid is not None:
            await self._block_one(msg, m.card_uid, f"blocked:{m.contract}:{m.card_uid}:"
                                  f"{m.blocked_at.isoformat()}", True, m.blocked_at, m.reason)
            return
        await self._block(msg, m.contract, f"blocked:{m.contract}:{m.blocked_at.isoformat()}",
                          True, m, m.reason)

    async def on_card_unblocked(self, msg: Inbound[wallet_wire.CardUnblocked]) -> None:
        m = msg.message
        if m.card_uid is not None:
            await self._block_one(msg, m.card_uid, f"unblocked:{m.contract}:{m.card_uid}:"
                                  f"{m.unblocked_at.isoformat()}", False, m.unblocked_at, "")
            return
        await self._block(msg, m.contract,
                          f"unblocked:{m.contract}:{m.unblocked_at.isoformat()}", False, m, "")

    async def _block_one(self, msg: Inbound, card_uid: str, event_id: str, blocked: bool,
                         at: datetime, reason: str) -> None:
        """One credential blocked or unblocked on its own (wallet's event with a card uid)."""
        async with self.case(msg) as uc:
            tx = uc.tx
            card = await store.load_card(tx, card_uid)
            loaded = card.version if card else None
            outcome = d.block_one_card(card, card_uid, event_id, blocked, at, reason)
            await store.save_card(tx, outcome.card, loaded)
            _emit(tx, outcome.events, None, msg.inbox_id)

    async def _block(self, msg: Inbound, contract: str, event_id: str, blocked: bool,
                     m: wallet_wire.CardBlocked | wallet_wire.CardUnblocked, reason: str) -> None:
        at = m.blocked_at if isinstance(m, wallet_wire.CardBlocked) else m.unblocked_at
        async with self.case(msg) as uc:
            tx = uc.tx
            link = await store.load_contract(tx, contract)
            cards = await store.load_cards(tx, link.card_uids) if link else []
            versions = {c.card_uid: c.version for c in cards}
            loaded = link.version if link else None
            outcome = d.block_contract(link, contract, cards, event_id, blocked, at, reason)
            await self._save_contract(tx, outcome, loaded, versions)  # type: ignore[arg-type]
            _emit(tx, outcome.events, None, msg.inbox_id)

    async def _save_contract(self, tx: Transaction, outcome: d.ContractOutcome,
                             loaded: int | None, card_versions: dict[str, int | None]) -> None:
        await store.save_contract(tx, outcome.link, loaded)
        for card in outcome.cards:
            await store.save_card(tx, card.card, card_versions.get(card.card.card_uid))

    # --- commands from apps --------------------------------------------------------------------

    async def on_set_school_schedule(self, msg: Inbound[wire.SetSchoolSchedule]) -> None:
        m = msg.message
        async with self.case(msg) as uc:
            uc.authorize("school_settings", school_id=m.school_id)
            command = _schedule(m)
            current = await store.load_schedule(uc.tx, m.school_id)
            loaded = current.version if current is not None else None
            outcome = d.apply_schedule_command(current, command, uc.tx.now)
            if not outcome.replayed:
                await store.save_schedule(uc.tx, outcome.schedule, loaded)
            uc.tx.reply(CommandAccepted(request_id=m.request_id))

    async def on_record_manual_entry(self, msg: Inbound[wire.RecordManualEntry]) -> None:
        m = msg.message
        async with self.case(msg) as uc:
            uc.authorize("manual_entry", school_id=m.school_id)
            tx = uc.tx
            schedule = await self._schedule(tx, m.school_id)
            student = await store.student(tx, m.contract)
            key = d.day_key(m.contract, schedule.school_day(m.at))
            day = await store.load_day(tx, key)
            loaded = day.version if day is not None else None
            outcome = d.record_manual_entry(day, schedule, student, _manual(m), tx.now)
            if outcome.day is not None and not outcome.replayed:
                await store.save_day(tx, outcome.day, loaded)
            _emit(tx, outcome.events, schedule.zone, msg.inbox_id)
            tx.reply(CommandAccepted(request_id=m.request_id))

    @staticmethod
    async def _schedule(tx: Transaction, school_id: str) -> d.SchoolSchedule:
        schedule = await store.load_schedule(tx, school_id)
        if schedule is None:
            raise Refused("no_schedule", "the school has no schedule")
        return schedule

    async def on_get_class_register(self, msg: Inbound[wire.GetClassRegister]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            uc.authorize("view_attendance", school_id=q.school_id)
            tx = uc.tx
            schedule = await self._schedule(tx, q.school_id)
            day = date.fromisoformat(q.local_date)
            roster = await store.students(tx, q.school_id, q.class_name)
            days = await store.days_of_class(tx, q.school_id, q.class_name, day)
            rows = d.class_register(schedule, roster, days, day, q.class_name)
            tx.reply(wire.ClassRegisterReply(lines=[_line(r) for r in rows],
                                             csv=d.register_csv(rows) if q.csv else None))

    async def _student(self, uc: Case[Any], contract: str) -> tuple[d.Student, d.SchoolSchedule]:
        """Authorize a query about the child under ``contract`` (a guardian: ``view``; staff:
        ``view_attendance`` on the school of the child's card) and load the child and the
        school's schedule."""
        cards = await store.cards_of_contract(uc.tx, contract)
        student = next((s for c in cards if (s := d.student_of(c)) is not None), None)
        school_id = student.school_id if student is not None else None
        uc.authorize("view" if uc.holder.role is Role.PARENT else "view_attendance",
                     contract=contract, school_id=school_id or "")
        schedule = await store.load_schedule(uc.tx, school_id) if school_id else None
        if student is None or schedule is None:
            raise Refused("unknown_student", "no card or no school schedule for this contract")
        return student, schedule

    async def on_get_student_stats(self, msg: Inbound[wire.GetStudentStats]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            _, schedule = await self._student(uc, q.contract)
            start, end = date.fromisoformat(q.date_from), date.fromisoformat(q.date_to)
            d.check_period(start, end)
            days = await store.days_of_student(tx, q.contract, start, end)
            summary = d.student_summary(schedule, q.contract, days, start, end, tx.now)
            months = d.student_months(schedule, q.contract, days, start, end,
                                      tx.now) if q.by_month else []
            average = summary.average_arrival
            tx.reply(wire.StudentStatsReply(
                contract=q.contract, **_school_day(schedule, tx.now),
                days_present=summary.days_present,
                late_count=summary.late_count,
                average_arrival=_hhmm(average),
                csv=(d.summary_csv([*months, summary], absent_days=True) if q.by_month
                     else d.summary_csv([summary])) if q.csv else None,
                chart_svg=d.arrival_chart_svg(schedule, q.contract, days, start.year,
                                              start.month) if q.chart else None,
                lesson_days=summary.lesson_days,
                absent_days=[x.isoformat() for x in summary.absent_days],
                months=[_month(m) for m in months]))

    async def on_get_entry_log(self, msg: Inbound[wire.GetEntryLog]) -> None:
        q = msg.message
        async with self.case(msg) as uc:
            tx = uc.tx
            student, schedule = await self._student(uc, q.contract)
            start, end = date.fromisoformat(q.date_from), date.fromisoformat(q.date_to)
            d.check_period(start, end)
            days = await store.days_of_student(tx, q.contract, start, end)
            log = d.entry_log(schedule, student, days, start, end, tx.now)
            scope = paging.scope_of(contract=q.contract, date_from=q.date_from,
                                    date_to=q.date_to)
            try:
                chosen, following = paging.page(log, _log_key, limit=q.limit, cursor=q.cursor,
                                                scope=scope)
            except paging.InvalidCursor as exc:
                raise Refused("invalid_cursor", str(exc)) from None
            tx.reply(wire.EntryLogReply(contract=q.contract, **_school_day(schedule, tx.now),
                                        days=[_log_day(x) for x in chosen],
                                        next_cursor=following))

    # --- the periodic sweep -------------------------------------------------------------------

    async def sweep(self) -> None:
        """Missing-at-lesson-start and absence detection and end-of-day closing for every
        school, by the runtime clock.

        Each (school, day, kind) is done once (a marker in access_sweeps); the students are
        handled in batches of ``sweep_batch`` per transaction so the serialised dev database is
        never held long. A crash midway is harmless: the per-day markers on the records make a
        rerun emit nothing twice. Nothing runs while the gate-tap backlog exceeds
        ``ACCESS_SWEEP_MAX_LAG``: the checks judge from taps that must be in first.
        """
        behind = await self.rt.lag(GATE_TAPS)
        if behind > self.settings.sweep_max_lag:
            log.warning("attendance sweep held: gate taps not consumed yet", behind=behind,
                        max_lag=self.settings.sweep_max_lag)
            return
        now = self.rt.clock()
        for schedule in await store.all_schedules(self.rt.db):
            due = schedule.due_sweeps(now, self.settings.sweep_lookback_days)
            ids = {f"{schedule.school_id}:{day.isoformat()}:{kind}": (day, kind)
                   for day, kind in due}
            done = await store.sweeps_done(self.rt.db, ids)
            for sweep_id, (day, kind) in ids.items():
                if sweep_id in done:
                    continue
                if kind == "lessons":
                    await self._sweep_roster(schedule, day, d.detect_missing_at_lesson_start)
                elif kind == "absence":
                    await self._sweep_roster(schedule, day, d.detect_absences)
                else:
                    await self._sweep_closing(schedule, day)
                async with self.rt.transaction() as tx:
                    await store.mark_sweep_done(tx, sweep_id)
                log.info("attendance sweep done", sweep=sweep_id)

    async def _sweep_roster(self, schedule: d.SchoolSchedule, day: date,
                            detect: Callable[..., d.SweepOutcome]) -> None:
        """Mark every student of the school for ``day`` (no entry at the first lesson, or
        absent at the cut-off), in batches."""
        async with self.rt.transaction() as tx:
            roster = await store.students(tx, schedule.school_id)
        batch = self.settings.sweep_batch
        for i in range(0, len(roster), batch):
            chunk = roster[i:i + batch]
            async with self.rt.transaction() as tx:
                days = await store.load_days(tx, [d.day_key(s.contract, day) for s in chunk])
                loaded = {k: v.version for k, v in days.items()}
                outcome = detect(schedule, chunk, days, day, tx.now)
                await store.save_days(tx, outcome.days, loaded)
                _emit(tx, outcome.events, schedule.zone, f"sweep:{day}")

    async def _sweep_closing(self, schedule: d.SchoolSchedule, day: date) -> None:
        while True:
            async with self.rt.transaction() as tx:
                days = await store.open_days(tx, schedule.school_id, day, self.settings.sweep_batch)
                loaded = {x.key: x.version for x in days}
                outcome = d.close_finished_days(schedule, days, tx.now)
                await store.save_days(tx, outcome.days, loaded)
                _emit(tx, outcome.events, schedule.zone, f"sweep:{day}")
            if not outcome.days:
                return


def _school_day(schedule: d.SchoolSchedule, now: datetime) -> dict[str, str]:
    """Today as the school counts days, and its time zone (what "today" means on a page)."""
    return {"today": schedule.school_day(now).isoformat(), "time_zone": schedule.data.timezone}
