"""access: the topic -> handler table and the attendance sweep tick."""

from __future__ import annotations

from contracts import access, integrations, wallet
from services.access import metrics, store
from services.access.handlers import Handlers
from services.access.settings import Settings
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, Tick, main


async def wire(rt: Runtime) -> Routes:
    settings: Settings = rt.settings  # type: ignore[assignment]
    await store.ensure_indexes(rt.db, attendance_retention_days=settings.attendance_retention_days,
                               gate_tap_retention_days=settings.gate_tap_retention_days)
    h = Handlers(rt)
    rt.uow.observe(metrics.observe)  # domain counters, per committed event
    rt.ticks.append(Tick(every_s=settings.sweep_interval_s, run=h.sweep,
                         name="attendance-sweep"))
    return {
        # integrations.card-issuance.v1
        integrations.CardIssued: h.on_card_issued,
        integrations.CardReissued: h.on_card_reissued,
        integrations.VirtualCardIssued: h.on_virtual_card_issued,
        # wallet.events.v1 (keyed by contract)
        wallet.CardBlocked: h.on_card_blocked,
        wallet.CardUnblocked: h.on_card_unblocked,
        # integrations.gate-taps.v1
        integrations.GateTapped: h.on_gate_tapped,
        # access.commands.v1
        access.SetSchoolSchedule: h.on_set_school_schedule,
        access.RecordManualEntry: h.on_record_manual_entry,
        access.GetClassRegister: h.on_get_class_register,
        access.GetStudentStats: h.on_get_student_stats,
        access.GetEntryLog: h.on_get_entry_log,
    }


def run() -> None:
    main("access", Settings, wire)
