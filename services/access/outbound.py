"""Domain events -> wire events: one small function per event, the only translation point.

Message ids are derived from the business key (uuid5): a tap decided again (the controller
retried with a new message id) re-emits its decision under the very same id, and a late,
absence or closing event of a student's day always has the same id, so downstream inboxes drop
repeats.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from contracts import access as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from services.access import domain as d

NAMESPACE = uuid.UUID("a7c3e1d2-5b4f-4c8a-9e6d-2f1b0c3d4e5f")


def message_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([kind, *map(str, parts)])))


@dataclass(frozen=True)
class Context:
    """What a mapping may need beyond the event: the time of the commit, the school's zone
    (local times on the wire) and the id of the message that caused the event."""

    now: datetime
    zone: ZoneInfo | None
    cause_id: str


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _local_hhmm(at: datetime, zone: ZoneInfo | None) -> str:
    return _hhmm((at.astimezone(zone) if zone else at).time())


def _decision(e: d.TapDecided, c: Context) -> ContractModel:
    return wire.GateDecision(tap_id=e.tap_id, gate_id=e.gate_id, card_uid=e.card_uid,
                             allowed=e.allowed,
                             reason=None if e.allowed else wire.DenyReason(e.reason.value),
                             decided_at=e.decided_at or c.now)


def _entered(e: d.StudentEntered, c: Context) -> ContractModel | None:
    if e.gate_id is None:  # a guard's entry: ManualEntryRecorded tells it
        return None
    return wire.StudentEntered(contract=e.contract, school_id=e.school_id, gate_id=e.gate_id,
                               tap_id=e.passage_id, at=e.at, local_date=e.day.isoformat())


def _left(e: d.StudentExited, c: Context) -> ContractModel | None:
    if e.gate_id is None:
        return None
    return wire.StudentLeft(contract=e.contract, school_id=e.school_id, gate_id=e.gate_id,
                            tap_id=e.passage_id, at=e.at, local_date=e.day.isoformat())


def _manual(e: d.ManualEntryRecorded, c: Context) -> ContractModel:
    return wire.ManualEntryRecorded(contract=e.contract, school_id=e.school_id,
                                    guard_id=e.guard_id, entry_id=e.entry_id, reason=e.reason,
                                    at=e.at, local_date=e.day.isoformat())


def _late(e: d.StudentLate, c: Context) -> ContractModel:
    return wire.LateArrivalDetected(contract=e.contract, school_id=e.school_id,
                                    local_date=e.day.isoformat(), arrived_at=e.first_arrival,
                                    lesson_start=_hhmm(e.lesson_start),
                                    minutes_late=e.minutes_late)


def _missing(e: d.StudentNotInAtLessonStart, c: Context) -> ContractModel:
    return wire.NotInSchoolAtLessonStart(contract=e.contract, school_id=e.school_id,
                                         local_date=e.day.isoformat(),
                                         lesson_start=_local_hhmm(e.lesson_start_at, c.zone),
                                         lesson_start_at=e.lesson_start_at)


def _absent(e: d.StudentAbsent, c: Context) -> ContractModel:
    return wire.AbsenceDetected(contract=e.contract, school_id=e.school_id,
                                local_date=e.day.isoformat(),
                                cutoff=_local_hhmm(e.cutoff_at, c.zone))


def _closed(e: d.AttendanceDayClosed, c: Context) -> ContractModel:
    return wire.AttendanceDayClosed(contract=e.contract, school_id=e.school_id,
                                    local_date=e.day.isoformat(), first_arrival=e.first_arrival,
                                    last_exit=e.last_exit, late=e.late, closed_by=e.closed_by)


def _allow(e: d.AllowListEntryChanged, c: Context) -> ContractModel:
    return wire.AllowListEntry(card_uid=e.card_uid, school_id=e.school_id, allowed=e.allowed,
                               reason=None if e.allowed else wire.DenyReason(e.reason.value),
                               updated_at=c.now)


Mapping = tuple[Callable[[Any, Context], ContractModel | None], Callable[[Any], str],
                Callable[[Any, Context], str]]

OUTBOUND: dict[type[Any], Mapping] = {
    d.TapDecided: (_decision, lambda e: e.gate_id,
                   lambda e, c: message_id("decision", e.tap_id)),
    d.StudentEntered: (_entered, lambda e: e.contract,
                       lambda e, c: message_id("entered", e.contract, e.passage_id)),
    d.StudentExited: (_left, lambda e: e.contract,
                      lambda e, c: message_id("left", e.contract, e.passage_id)),
    d.ManualEntryRecorded: (_manual, lambda e: e.contract,
                            lambda e, c: message_id("manual", e.entry_id)),
    d.StudentLate: (_late, lambda e: e.contract,
                    lambda e, c: message_id("late", e.contract, e.day)),
    d.StudentNotInAtLessonStart: (_missing, lambda e: e.contract,
                                  lambda e, c: message_id("missing", e.contract, e.day)),
    d.StudentAbsent: (_absent, lambda e: e.contract,
                      lambda e, c: message_id("absent", e.contract, e.day)),
    d.AttendanceDayClosed: (_closed, lambda e: e.contract,
                            lambda e, c: message_id("closed", e.contract, e.day)),
    d.AllowListEntryChanged: (_allow, lambda e: e.card_uid,
                              lambda e, c: message_id("allow", e.card_uid, c.cause_id)),
}


def to_wire(event: Any, context: Context) -> tuple[str, str, ContractModel, str] | None:
    """(topic, key, message, message id) for a domain event; None for internal-only events
    (a schedule set, the StudentEntered of a manual entry)."""
    mapping = OUTBOUND.get(type(event))
    if mapping is None:
        return None
    convert, key, mid = mapping
    message = convert(event, context)
    if message is None:
        return None
    return topic_for(type(message)).name, key(event), message, mid(event, context)
