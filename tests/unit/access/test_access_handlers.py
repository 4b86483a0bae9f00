"""access's handlers over the in-memory fakes: each handler's events, replies and stored state,
and a second delivery of the same message that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from contracts import access as wire
from contracts import integrations as integ
from contracts import wallet as wallet_wire
from contracts.auth import ChildGrant, Role
from contracts.envelope import CommandAccepted
from contracts.types import GuardianRole
from services.access.handlers import Handlers
from services.access.settings import Settings
from services.runtime.consumer import Rejected
from tests.unit.fakes import FakeRuntime, plain_dialect

pytestmark = pytest.mark.unit

SCHOOL = "izh-school-42"
CONTRACT = "40012345"
NEW_CONTRACT = "40012346"
CARD = "04A2B3C4D5E6F7"
NEW_CARD = "04A2B3C4D5E6F8"
DAY = "2026-09-01"  # a Tuesday; Europe/Samara is UTC+4
ARRIVAL = datetime(2026, 9, 1, 3, 50, tzinfo=UTC)  # 07:50 local, before the 08:30 lesson
NOW = ARRIVAL + timedelta(minutes=1)


@pytest.fixture(autouse=True)
def _plain_dialect() -> Iterator[None]:
    with plain_dialect():
        yield


def _schedule(request_id: str = "req-schedule") -> wire.SetSchoolSchedule:
    return wire.SetSchoolSchedule(
        request_id=request_id, school_id=SCHOOL, time_zone="Europe/Samara",
        hours=[wire.DayHours(weekday=w, opens="07:00", closes="19:00", first_lesson="08:30")
               for w in range(5)],
        absence_cutoff="10:00", holidays=[], sessions=[])


def _admin(rt: FakeRuntime) -> str:
    return rt.token(Role.SCHOOL_ADMIN, account_id="acc_admin0001", school_id=SCHOOL)


def _issued(card_uid: str = CARD, contract: str = CONTRACT) -> integ.CardIssued:
    return integ.CardIssued(contract=contract, card_uid=card_uid, school_id=SCHOOL,
                            school_tz="Europe/Samara", student_id="stu-000451", class_name="5Б",
                            birth_date="2014-03-08", issued_at=NOW - timedelta(days=2))


def _tap(tap_id: str = "gate-3-000451", at: datetime = ARRIVAL) -> integ.GateTapped:
    return integ.GateTapped(tap_id=tap_id, gate_id="izh-42-gate-3", school_id=SCHOOL,
                            card_uid=CARD, direction="in", tapped_at=at)


async def _access(*, schedule: bool = True, card: bool = True) -> tuple[FakeRuntime, Handlers]:
    rt = FakeRuntime("access", Settings, now=NOW)
    h = Handlers(rt)
    if schedule:
        await h.on_set_school_schedule(rt.inbound(_schedule(), token=_admin(rt)))
    if card:
        await h.on_card_issued(rt.inbound(_issued(), key=CONTRACT))
    rt.fake_uow.sent.clear()
    rt.fake_uow.replies.clear()
    return rt, h


async def test_a_school_admin_sets_the_schedule_of_their_school():
    rt, h = await _access(schedule=False, card=False)
    msg = rt.inbound(_schedule(), token=_admin(rt))
    await h.on_set_school_schedule(msg)
    assert rt.reply() == CommandAccepted(request_id="req-schedule")
    stored = await rt.db.access_schedules.find_one({"_id": SCHOOL})
    assert stored is not None and stored["version"] == 1
    await rt.redelivered_changes_nothing(h.on_set_school_schedule, msg)


async def test_a_teacher_may_not_set_a_schedule_and_without_a_reply_topic_it_is_dead_lettered():
    rt, h = await _access(schedule=False, card=False)
    teacher = rt.token(Role.TEACHER, account_id="acc_teacher001", school_id=SCHOOL)
    await h.on_set_school_schedule(rt.inbound(_schedule(), token=teacher))
    assert rt.error_code() == "forbidden"
    with pytest.raises(Rejected) as rejected:
        await h.on_set_school_schedule(rt.inbound(_schedule(), token=teacher, reply_to=""))
    assert rejected.value.code == "forbidden"
    assert await rt.db.access_schedules.count_documents({}) == 0


async def test_an_issued_card_joins_the_allow_list_and_the_roster():
    rt, h = await _access(card=False)
    msg = rt.inbound(_issued(), key=CONTRACT)
    await h.on_card_issued(msg)
    [entry] = rt.emitted(wire.AllowListEntry)
    assert (entry.card_uid, entry.school_id, entry.allowed) == (CARD, SCHOOL, True)
    card = await rt.db.access_cards.find_one({"_id": CARD})
    link = await rt.db.access_contracts.find_one({"_id": CONTRACT})
    assert card is not None and card["contract"] == CONTRACT
    assert link is not None and link["card_uids"] == [CARD]
    await rt.redelivered_changes_nothing(h.on_card_issued, msg)


async def test_a_reissued_card_replaces_the_old_contract_and_card():
    rt, h = await _access()
    msg = rt.inbound(integ.CardReissued(
        old_contract=CONTRACT, new_contract=NEW_CONTRACT, new_card_uid=NEW_CARD,
        school_id=SCHOOL, school_tz="Europe/Samara", class_name="5Б", reissued_at=NOW),
        key=CONTRACT)
    await h.on_card_reissued(msg)
    assert {(e.card_uid, e.allowed) for e in rt.emitted(wire.AllowListEntry)} == {
        (CARD, False), (NEW_CARD, True)}
    old = await rt.db.access_contracts.find_one({"_id": CONTRACT})
    assert old is not None and old["replaced_by"] == NEW_CONTRACT
    await rt.redelivered_changes_nothing(h.on_card_reissued, msg)


async def test_a_blocked_contract_takes_its_card_off_the_allow_list_and_unblocking_restores_it():
    rt, h = await _access()
    blocked = rt.inbound(wallet_wire.CardBlocked(contract=CONTRACT, by_account=None,
                                                 reason="lost", blocked_at=NOW), key=CONTRACT)
    await h.on_card_blocked(blocked)
    await rt.redelivered_changes_nothing(h.on_card_blocked, blocked)
    link = await rt.db.access_contracts.find_one({"_id": CONTRACT})
    assert link is not None and link["blocked"] is True
    unblocked = rt.inbound(wallet_wire.CardUnblocked(contract=CONTRACT, by_account=None,
                                                     unblocked_at=NOW + timedelta(minutes=5)),
                         key=CONTRACT)
    await h.on_card_unblocked(unblocked)
    await rt.redelivered_changes_nothing(h.on_card_unblocked, unblocked)
    assert [(e.card_uid, e.allowed) for e in rt.emitted(wire.AllowListEntry)] == [
        (CARD, False), (CARD, True)]


async def test_a_tap_at_the_gate_lets_the_child_in_once():
    rt, h = await _access()
    msg = rt.inbound(_tap(), key=CARD)
    await h.on_gate_tapped(msg)
    [decision] = rt.emitted(wire.GateDecision)
    [entered] = rt.emitted(wire.StudentEntered)
    assert (decision.tap_id, decision.allowed) == ("gate-3-000451", True)
    assert (entered.contract, entered.local_date) == (CONTRACT, DAY)
    assert await rt.db.access_taps.count_documents({}) == 1
    day = await rt.db.access_days.find_one({"contract": CONTRACT})
    assert day is not None and day["day"] is not None
    await rt.redelivered_changes_nothing(h.on_gate_tapped, msg)


async def test_a_retried_tap_gets_its_recorded_decision_again_under_the_same_id():
    rt, h = await _access()
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))
    stored = rt.fake_db.dump()["access_days"]
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))  # same tap id, a new message
    first, again = [p for p in rt.emitted_records() if isinstance(p.message, wire.GateDecision)]
    assert again.envelope.id == first.envelope.id
    assert again.message == first.message
    assert rt.emitted(wire.StudentEntered) != [] and len(rt.emitted(wire.StudentEntered)) == 1
    assert rt.fake_db.dump()["access_days"] == stored


async def test_a_tap_in_the_future_is_dead_lettered():
    rt, h = await _access()
    with pytest.raises(Rejected):
        await h.on_gate_tapped(rt.inbound(_tap(at=NOW + timedelta(days=1)), key=CARD))
    assert await rt.db.access_taps.count_documents({}) == 0
    assert rt.emitted() == []


async def test_a_manual_entry_records_the_child_in_and_answers():
    rt, h = await _access()
    msg = rt.inbound(wire.RecordManualEntry(
        request_id="req-manual", school_id=SCHOOL, contract=CONTRACT, guard_id="guard-7",
        reason="forgotten_card", at=ARRIVAL), token=_admin(rt))
    await h.on_record_manual_entry(msg)
    assert rt.reply() == CommandAccepted(request_id="req-manual")
    [entry] = rt.emitted(wire.ManualEntryRecorded)
    assert (entry.contract, entry.local_date) == (CONTRACT, DAY)
    assert await rt.db.access_days.count_documents({"contract": CONTRACT}) == 1
    await rt.redelivered_changes_nothing(h.on_record_manual_entry, msg)


async def test_a_manual_entry_at_a_school_without_a_schedule_is_refused():
    rt, h = await _access(schedule=False)
    await h.on_record_manual_entry(rt.inbound(wire.RecordManualEntry(
        request_id="req-manual", school_id=SCHOOL, contract=CONTRACT, guard_id="guard-7",
        reason="forgotten_card", at=ARRIVAL), token=_admin(rt)))
    assert rt.error_code() == "no_schedule"
    assert await rt.db.access_days.count_documents({}) == 0


async def test_the_class_register_lists_who_arrived():
    rt, h = await _access()
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))
    teacher = rt.token(Role.TEACHER, account_id="acc_teacher001", school_id=SCHOOL)
    msg = rt.inbound(wire.GetClassRegister(school_id=SCHOOL, class_name="5Б", local_date=DAY,
                                           csv=True), token=teacher)
    await h.on_get_class_register(msg)
    reply = rt.reply()
    assert isinstance(reply, wire.ClassRegisterReply)
    assert [(line.contract, line.arrived_at, line.absent) for line in reply.lines] == [
        (CONTRACT, ARRIVAL, False)]
    assert reply.csv is not None and CONTRACT in reply.csv
    await rt.redelivered_changes_nothing(h.on_get_class_register, msg)


async def test_staff_of_another_school_may_not_read_the_register():
    rt, h = await _access()
    other = rt.token(Role.TEACHER, account_id="acc_teacher002", school_id="izh-school-7")
    await h.on_get_class_register(rt.inbound(wire.GetClassRegister(
        school_id=SCHOOL, class_name="5Б", local_date=DAY), token=other))
    assert rt.error_code() == "forbidden"


async def test_a_guardian_reads_the_attendance_stats_of_their_child():
    rt, h = await _access()
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))
    parent = rt.token(children=[ChildGrant(contract=CONTRACT, role=GuardianRole.CO_GUARDIAN)])
    msg = rt.inbound(wire.GetStudentStats(contract=CONTRACT, date_from=DAY, date_to=DAY,
                                          csv=False, chart=False), token=parent)
    await h.on_get_student_stats(msg)
    reply = rt.reply()
    assert isinstance(reply, wire.StudentStatsReply)
    assert (reply.contract, reply.days_present, reply.late_count) == (CONTRACT, 1, 0)
    assert reply.average_arrival == "07:50"
    assert (reply.today, reply.time_zone) == (DAY, "Europe/Samara")  # the school's day
    await rt.redelivered_changes_nothing(h.on_get_student_stats, msg)


async def test_a_parent_without_a_grant_gets_no_stats():
    rt, h = await _access()
    stranger = rt.token(children=[ChildGrant(contract=NEW_CONTRACT, role=GuardianRole.PRIMARY)])
    await h.on_get_student_stats(rt.inbound(wire.GetStudentStats(
        contract=CONTRACT, date_from=DAY, date_to=DAY, csv=False, chart=False), token=stranger))
    assert rt.error_code() == "forbidden"


async def test_a_guardian_reads_the_entry_log_of_a_period_in_pages_of_days():
    rt, h = await _access()
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))
    rt.now = NOW + timedelta(days=3)  # Friday: Wednesday and Thursday were lesson days
    parent = rt.token(children=[ChildGrant(contract=CONTRACT, role=GuardianRole.CO_GUARDIAN)])
    query = wire.GetEntryLog(contract=CONTRACT, date_from=DAY, date_to="2026-09-03", limit=2)
    await h.on_get_entry_log(rt.inbound(query, token=parent))
    first = rt.reply()
    assert isinstance(first, wire.EntryLogReply)
    assert (first.today, first.time_zone) == ("2026-09-04", "Europe/Samara")
    assert [(x.local_date, x.absent, x.passage_count) for x in first.days] == [
        (DAY, False, 1), ("2026-09-02", True, 0)]
    assert first.days[0].passages[0].gate_id == "izh-42-gate-3"
    assert first.next_cursor is not None
    rt.fake_uow.replies.clear()
    await h.on_get_entry_log(rt.inbound(query.model_copy(update={"cursor": first.next_cursor}),
                                        token=parent))
    second = rt.reply()
    assert [x.local_date for x in second.days] == ["2026-09-03"]
    assert second.next_cursor is None


async def test_the_entry_log_is_for_the_childs_school_staff_and_a_bounded_period():
    rt, h = await _access()
    own = rt.token(Role.TEACHER, account_id="acc_teacher001", school_id=SCHOOL)
    other = rt.token(Role.TEACHER, account_id="acc_teacher002", school_id="izh-school-7")
    query = wire.GetEntryLog(contract=CONTRACT, date_from=DAY, date_to=DAY)
    await h.on_get_entry_log(rt.inbound(query, token=own))
    assert isinstance(rt.reply(), wire.EntryLogReply)
    rt.fake_uow.replies.clear()
    await h.on_get_entry_log(rt.inbound(query, token=other))
    assert rt.error_code() == "forbidden"
    rt.fake_uow.replies.clear()
    await h.on_get_entry_log(rt.inbound(wire.GetEntryLog(
        contract=CONTRACT, date_from="2025-08-31", date_to=DAY), token=own))  # 367 days
    assert rt.error_code() == "invalid_period"


async def test_stats_by_month_name_the_absent_days_of_each_month():
    rt, h = await _access()
    await h.on_gate_tapped(rt.inbound(_tap(), key=CARD))
    rt.now = datetime(2026, 10, 2, 12, tzinfo=UTC)
    parent = rt.token(children=[ChildGrant(contract=CONTRACT, role=GuardianRole.PRIMARY)])
    await h.on_get_student_stats(rt.inbound(wire.GetStudentStats(
        contract=CONTRACT, date_from="2026-09-29", date_to="2026-10-02", by_month=True,
        csv=True), token=parent))
    reply = rt.reply()
    assert isinstance(reply, wire.StudentStatsReply)
    assert reply.absent_days == ["2026-09-29", "2026-09-30", "2026-10-01", "2026-10-02"]
    assert [(m.month, m.absent_days) for m in reply.months] == [
        ("2026-09", ["2026-09-29", "2026-09-30"]), ("2026-10", ["2026-10-01", "2026-10-02"])]
    assert reply.csv is not None and reply.csv.count("\r\n") == 4  # header, 2 months, total
