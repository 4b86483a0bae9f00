"""The parents' cabinet over the real broker (issue 17): auth and notify in-process on the real
MongoDB-protocol server, notify sending through the local SMTP and HTTP sinks. A new e-mail is
confirmed with a code that notify mails to it; a wrong code is refused; a parent with the
issuer's activation code claims a child held by a contract login that never confirmed a
phone, which is closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import auth as cmd
from contracts.integrations import CardIssued
from deploy.local.sinks import read_mail
from services.auth.domain import activation_code_digest
from services.auth.outbound import new_account_id
from services.runtime.tokens import verify_access_token
from tests.integration.notify_support import notify_stack
from tests.integration.test_auth_flows import (
    SECRETS,
    code_for,
    contract,
    error,
    login,
    password,
    phone,
    register,
    send,
)
from tests.support import FakeClock, Integrator, Requester, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.integration

BORN = date(2015, 9, 14)


@pytest.fixture(scope="module")
async def cabinet(service_runner, infra, bootstrap,
                  tmp_path_factory) -> AsyncIterator[SimpleNamespace]:
    """auth on the system clock, notify with its sinks, and the test's own Kafka clients."""
    async with service_runner("auth", private_key=infra["AUTH_PRIVATE_KEY"],
                              pepper=f"pepper-{uid()}") as svc, \
            notify_stack(service_runner, bootstrap, infra,
                         tmp_path_factory.mktemp("cabinet-sinks")) as notify, \
            Requester(bootstrap) as requester, Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp, \
            TopicReader(bootstrap, "auth.events.v1") as events, \
            TopicReader(bootstrap, "auth.guardian-contacts.v1") as contacts:
        yield SimpleNamespace(svc=svc, db=svc.runtime.db, req=requester, integrator=integrator,
                              otp=otp, events=events, contacts=contacts,
                              mail_dir=Path(notify["sinks"].directory),
                              clock=FakeClock(datetime.now(UTC)),
                              public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"])


async def a_parent(c: SimpleNamespace) -> SimpleNamespace:
    """A registered, logged-in parent (no child: the contract is nobody's)."""
    number, tel, pw = contract(), phone(), password()
    await issue_coded_card(c, number, code=uid("ac"), contract_login=False)
    await register(c, number, tel, pw)
    tokens = await login(c, tel, pw)
    assert tokens["ok"], tokens
    sub = verify_access_token(tokens["access_token"], c.public_key, audience="auth").sub
    return SimpleNamespace(phone=tel, password=pw, account_id=sub, **tokens)


async def issue_coded_card(c: SimpleNamespace, number: str, *, code: str,
                           contract_login: bool) -> str:
    """A card whose issuer sent an activation code (and, with ``contract_login``, a parent
    login by contract number and birth date); the child's student id."""
    student = uid("stu")
    await c.integrator.publish(CardIssued(
        contract=number, card_uid=chip_uid(), school_id="izh-school-42",
        school_tz="Europe/Samara", student_id=student, class_name="2А", birth_date=BORN,
        initial_password_is_birth_date=contract_login,
        activation_code_hash=activation_code_digest(student, code), issued_at=c.clock.now),
        number)
    await eventually(lambda: c.db.auth_children.find_one({"contract_number": number}),
                     timeout=90, what="the child in auth_children")
    return student


async def mailed_code(c: SimpleNamespace, address: str) -> dict[str, Any]:
    """The one-time-code e-mail notify sent to ``address`` (read from the SMTP sink)."""
    def received() -> list[dict[str, Any]]:
        return [m for m in read_mail(c.mail_dir)
                if address in m["rcpt_tos"] and m["kind"] == "one_time_code"]

    [mail] = await eventually(lambda: _as_awaitable(received()), timeout=90,
                              what=f"the code e-mail to {address}")
    return mail


async def _as_awaitable(value: Any) -> Any:
    return value or None


async def test_a_new_e_mail_gets_its_code_by_e_mail_and_only_the_right_code_sets_it(cabinet):
    c = cabinet
    mum = await a_parent(c)
    address = f"{uid('mum')}@example.ru"
    started = await send(c, cmd.StartEmailChange(request_id=uid("e"), email=address.upper()),
                         mum.phone, mum.access_token)
    assert started["ok"] and started["resend_after_s"] == 60, started

    # auth asks notify on the code topic, for the address and not for the phone ...
    request = (await c.otp.wait_for(lambda r: r.key == address, timeout=90))[0]
    body = request.json()
    assert (body["email"], body["phone"], body["purpose"]) == (
        address, None, "email_confirmation")
    code = await code_for(c, address)
    # ... and notify mails it there
    mail = await mailed_code(c, address)
    assert code in mail["text"]

    wrong = "000000" if code != "000000" else "111111"
    refused = await send(c, cmd.ConfirmEmailChange(request_id=uid("w"), code=wrong),
                         mum.phone, mum.access_token)
    assert error(refused) == "code_invalid"
    stored = await c.db.auth_accounts.find_one({"_id": mum.account_id})
    assert stored.get("email") is None

    confirmed = await send(c, cmd.ConfirmEmailChange(request_id=uid("c"), code=code),
                           mum.phone, mum.access_token)
    assert confirmed["ok"], confirmed
    stored = await c.db.auth_accounts.find_one({"_id": mum.account_id})
    assert stored["email"] == address
    # notify learns the new address the way it learns a new phone
    await c.contacts.wait_for(lambda r: r.key == mum.account_id
                              and r.json().get("email") == address, timeout=90)
    profile = await send(c, cmd.GetProfile(), mum.phone, mum.access_token)
    assert profile["email"] == address


async def test_a_parent_with_the_activation_code_claims_a_child_held_by_a_contract_login(
        cabinet):
    c = cabinet
    number, activation = contract(), f"{uid('code')}".upper()
    SECRETS.add(activation)
    await issue_coded_card(c, number, code=activation, contract_login=True)
    placeholder = new_account_id("contract", number)
    child = await c.db.auth_children.find_one({"contract_number": number})
    assert child["guardian_ids"] == [placeholder]  # the contract login holds the child

    tel, pw = phone(), password()
    started = await send(c, cmd.StartRegistration(
        request_id=uid("r"), phone=tel, contract=number, password=pw, consent=True,
        activation_code=activation), tel)
    assert started["ok"], started
    confirmed = await send(c, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel,
                                                      code=await code_for(c, tel)), tel)
    assert confirmed["ok"] and confirmed["child_linked"] is True, confirmed

    parent = await c.db.auth_accounts.find_one({"phone": tel})
    child = await c.db.auth_children.find_one({"contract_number": number})
    assert child["guardian_ids"] == [parent["_id"]]
    # the rest of the system hears it: the contract login leaves, the parent is primary
    await c.events.wait_for(lambda r: r.key == placeholder
                            and r.type.endswith("GuardianRemoved")
                            and r.json()["contract"] == number, timeout=90)
    await c.events.wait_for(lambda r: r.key == parent["_id"]
                            and r.type.endswith("GuardianLinked")
                            and r.json()["role"] == "primary", timeout=90)
    await c.events.wait_for(lambda r: r.key == placeholder
                            and r.type.endswith("AccountClosed"),
                            timeout=90)
    closed = await c.db.auth_accounts.find_one({"_id": placeholder})
    assert closed["status"] == "closed" and closed.get("login_contract") is None
    # the contract number and the birth date log in no more; the parent sees the child
    old = await send(c, cmd.Login(request_id=uid("l"), login=number,
                                  password=BORN.strftime("%d%m%Y")), number)
    assert error(old) == "invalid_credentials"
    tokens = await login(c, tel, pw)
    claims = verify_access_token(tokens["access_token"], c.public_key, audience="auth")
    assert {ch.contract: ch.role.value for ch in claims.children} == {number: "primary"}
