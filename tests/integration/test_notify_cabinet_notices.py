"""The parents' cabinet's two notices end to end (issue 17), auth, wallet and notify in process
on the real broker and MongoDB-protocol server: the invitee of InviteGuardian is told — on
the contacts auth announced for their account, though they guard no child yet — and the
guardians of a child hear how the school handled an application (HandleApplication)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import auth as cmd
from contracts import wallet as w
from contracts.auth import ChildGrant, Role
from contracts.integrations import CardIssued
from contracts.types import GuardianRole
from services.runtime.broker import provision_topics
from services.runtime.tokens import issue_access_token
from tests.integration.conftest import infra_settings
from tests.integration.notify_support import (
    TZ,
    as_awaitable,
    contract,
    http_to,
    make_guardian,
    notify_stack,
)
from tests.integration.test_auth_flows import send
from tests.integration.test_family_and_profile import a_parent
from tests.support import (
    FakeClock,
    Integrator,
    Requester,
    TopicReader,
    chip_uid,
    eventually,
    uid,
)

pytestmark = pytest.mark.integration

JOIN_S = 120  # the first record after a service joined its group waits for the join


@pytest.fixture(scope="module")
async def cabinet(service_runner, infra, bootstrap, tmp_path_factory
                  ) -> AsyncIterator[SimpleNamespace]:
    """auth and wallet on the system clock, notify with the sinks, and readers of the
    in-app stream and wallet's events."""
    await provision_topics(infra_settings(infra))
    async with service_runner("auth", private_key=infra["AUTH_PRIVATE_KEY"],
                              pepper=f"pepper-{uid()}") as auth_svc, \
            service_runner("wallet", outbox_takeover_s=1e9,
                           scheduled_top_up_every_s=1e6), \
            notify_stack(service_runner, bootstrap, infra,
                         tmp_path_factory.mktemp("notify-cabinet-sinks")) as stack, \
            Requester(bootstrap) as requester, Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp, \
            TopicReader(bootstrap, "notify.in-app.v1") as in_app, \
            TopicReader(bootstrap, "wallet.events.v1") as wallet_events:
        yield SimpleNamespace(
            db=auth_svc.runtime.db, req=requester, integrator=integrator, otp=otp,
            clock=FakeClock(datetime.now(UTC)), public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
            key=infra["AUTH_PRIVATE_KEY"], stack=stack, in_app=in_app,
            wallet_events=wallet_events)


async def test_the_invitee_is_told_to_accept_in_the_cabinet_on_their_own_contacts(cabinet):
    f = cabinet
    mum = await a_parent(f)
    linked = await send(f, cmd.LinkChild(request_id=uid("k"), contract=mum.contract,
                                         birth_date="2014-03-08"), mum.phone, mum.access_token)
    assert linked["ok"], linked
    dad = await a_parent(f)  # a parent account guarding no child (another card's owner)
    invited = await send(f, cmd.InviteGuardian(
        request_id=uid("i"), contract=mum.contract, phone=dad.phone, role="viewer",
        reauth=cmd.Reauthentication(password=mum.password)), mum.phone, linked["access_token"])
    assert invited["ok"], invited

    [shown] = await f.in_app.wait_for(
        lambda r: r.key == dad.account_id and r.json()["kind"] == "guardian_invited",
        timeout=JOIN_S)
    note = shown.json()
    assert note["contract"] == mum.contract
    assert f"Карта {mum.contract}" in note["text"] and "личном кабинете" in note["text"]
    # no app on dad's phone: the SMS goes to the phone auth announced for his account
    [sms] = await eventually(lambda: as_awaitable(
        [s for s in http_to(f.stack, "/sms", to=dad.phone)
         if "Вас пригласили" in s["body"]["text"]]), timeout=JOIN_S, what="the invitation SMS")
    assert "«наблюдатель»" in sms["body"]["text"]
    # mum, who invited, is told nothing about it
    messages = f.stack["svc"].runtime.db.notify_messages
    assert await messages.count_documents({"guardian_id": mum.account_id,
                                           "kind": "guardian_invited"}) == 0


async def test_a_guardian_hears_that_the_school_refused_an_application_and_why(cabinet):
    f = cabinet
    child, school = contract(), uid("school").lower()
    await f.integrator.publish(CardIssued(
        contract=child, card_uid=chip_uid(), school_id=school, school_tz=TZ,
        student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
        issued_at=datetime.now(UTC)), child)
    await f.wallet_events.wait_for(
        lambda r: r.key == child and r.type.endswith(".AccountOpened"), timeout=JOIN_S)
    guardian, _ = await make_guardian(f.stack, child, push=True)

    def token(**claims: Any) -> str:
        return issue_access_token(f.key, account_id=claims.pop("account_id", guardian),
                                  session_id=uid("ses"), **claims)

    application = uid("app")
    submitted = await f.req.send(w.SubmitApplication(
        request_id=application, contract=child, kind="new_card", reason="lost"), child,
        token=token(role=Role.PARENT,
                    children=[ChildGrant(contract=child, role=GuardianRole.PRIMARY)]))
    assert submitted.json()["ok"] is True, submitted.json()
    handled = await f.req.send(w.HandleApplication(
        request_id=uid("req"), contract=child, application_id=application, decision="refuse",
        comment="Нужна справка из полиции"), child,
        token=token(account_id=f"acc_{uid('adm').replace('-', '')}", role=Role.SCHOOL_ADMIN,
                    school_id=school))
    assert handled.json()["ok"] is True, handled.json()

    [push] = await eventually(lambda: as_awaitable(
        [p for p in http_to(f.stack, "/push", account_id=guardian)
         if p["body"]["kind"] == "application_status"]), timeout=JOIN_S,
        what="the application's push")
    assert push["body"]["title"] == "Заявление отклонено"
    assert "заявление на новую карту отклонено" in push["body"]["body"]
    assert "Комментарий школы: Нужна справка из полиции." in push["body"]["body"]
    # the submission itself told nobody: one push, for the refusal
    messages = f.stack["svc"].runtime.db.notify_messages
    assert await messages.count_documents({"guardian_id": guardian, "channel": "push",
                                           "kind": "application_status"}) == 1
