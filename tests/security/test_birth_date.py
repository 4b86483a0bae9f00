"""Guessing a child's birth date, through the real broker and auth in-process: a contract
whose initial password is the birth date takes 10 wrong tries in total (not per hour), then
only support unlocks it, and an unknown contract number answers the same way; birth-date
proofs for linking a child have the same budget; where the issuer sent an activation code it
is the only proof; a child that already has a primary guardian answers a right proof as a
wrong one."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from contracts import auth as cmd
from contracts.integrations import CardIssued
from services.auth.domain import activation_code_digest
from tests.integration.test_auth_flows import (
    SECRETS,
    contract,
    error,
    issue_card,
    login,
    parent,
    send,
    staff,
)
from tests.support import chip_uid, eventually, uid

pytestmark = pytest.mark.integration

BORN = date(2013, 11, 2)
RIGHT = "02112013"


def by_contract(number: str, pw: str, n: int) -> cmd.Login:
    return cmd.Login(request_id=uid("l"), login=number, password=pw, device="guesser",
                     ip=f"203.0.113.{n}")


def wrong_dates(count: int) -> list[str]:
    return [(BORN + timedelta(days=d + 1)).strftime("%d%m%Y") for d in range(count)]


async def test_a_birth_date_password_falls_to_no_guessing_the_eleventh_try_is_refused(auth):
    a = auth
    number, unknown = contract(), contract()
    await issue_card(a, number, born=BORN, initial_password_is_birth_date=True)
    SECRETS.add(RIGHT)
    known_replies, unknown_replies = [], []
    for n, guess in enumerate(wrong_dates(10)):
        a.clock.advance(hours=6)  # spread over days: no hourly window helps the guesser
        known_replies.append(error(await send(a, by_contract(number, guess, n), number)))
        unknown_replies.append(error(await send(a, by_contract(unknown, guess, n), unknown)))
    assert known_replies == unknown_replies == ["invalid_credentials"] * 10
    a.clock.advance(days=30)
    right = await send(a, by_contract(number, RIGHT, 99), number)
    assert error(right) == "login_locked"
    # An unknown contract number answers the eleventh try the same way: no oracle.
    assert error(await send(a, by_contract(unknown, RIGHT, 99), unknown)) == "login_locked"

    agent = await staff(a)
    unlock = cmd.UnlockAccount(request_id=uid("u"), login=number,
                               reason=f"Family called; contract papers checked, {uid('SUP')}")
    assert (await send(a, unlock, number, agent.access_token))["ok"]
    first = await send(a, by_contract(number, RIGHT, 100), number)
    assert first["ok"] and first["must_change_password"], first


async def test_birth_date_proofs_for_linking_a_child_have_ten_tries_in_total(auth):
    a = auth
    victim_contract = contract()
    await issue_card(a, victim_contract, born=BORN)  # nobody has linked the child yet
    eve = await parent(a)

    async def link(birth_date: date) -> dict[str, Any]:
        fresh = await login(a, eve.phone, eve.password)  # tokens live 5 minutes
        return await send(a, cmd.LinkChild(request_id=uid("k"), contract=victim_contract,
                                           birth_date=birth_date.isoformat()),
                          eve.phone, fresh["access_token"])

    for d in range(10):
        a.clock.advance(hours=2)  # past the hourly window each time
        assert error(await link(BORN + timedelta(days=d + 1))) == "child_proof_invalid"
    a.clock.advance(days=3)
    assert error(await link(BORN)) == "child_proof_invalid"  # the 11th, right, is refused
    child = await a.db.auth_children.find_one({"contract_number": victim_contract})
    assert child["guardians"] == [] and child["birth_date_failures"] == 10

    agent = await staff(a)
    assert (await send(a, cmd.UnlockAccount(
        request_id=uid("u"), login=victim_contract,
        reason=f"Mother came with the birth certificate, {uid('SUP')}"), victim_contract,
        agent.access_token))["ok"]
    linked = await link(BORN)
    assert linked["ok"], linked


async def test_a_claimed_child_answers_a_right_and_a_wrong_proof_alike(auth):
    a = auth
    mum = await parent(a)  # linked with the birth date 2014-03-08: the primary
    eve = await parent(a, link=False)

    async def link(birth_date: str) -> Any:
        reply = await a.req.send(cmd.LinkChild(request_id=uid("k"), contract=mum.contract,
                                               birth_date=birth_date), eve.phone,
                                 token=eve.access_token)
        body = reply.json()
        body.pop("request_id", None)
        return reply.type, body

    right, wrong = await link("2014-03-08"), await link("2014-03-09")
    assert right == wrong and right[1]["error"]["code"] == "child_proof_invalid"


async def test_where_the_issuer_sent_an_activation_code_the_birth_date_does_not_link(auth):
    a = auth
    number, student, code = contract(), uid("stu"), "K7P2-Q9XM"
    SECRETS.add(code)
    await a.integrator.publish(CardIssued(
        contract=number, card_uid=chip_uid(), school_id="izh-school-42",
        school_tz="Europe/Samara", student_id=student, class_name="5Б", birth_date=BORN,
        activation_code_hash=activation_code_digest(student, code), issued_at=a.clock.now),
        number)
    await eventually(lambda: a.db.auth_children.find_one({"contract_number": number}),
                     timeout=90, what="the child with an activation code")
    p = await parent(a, link=False)
    by_date = await send(a, cmd.LinkChild(request_id=uid("k"), contract=number,
                                          birth_date=BORN.isoformat()), p.phone, p.access_token)
    assert error(by_date) == "child_proof_invalid"
    by_code = await send(a, cmd.LinkChild(request_id=uid("k"), contract=number,
                                          activation_code="k7p2 q9xm"), p.phone, p.access_token)
    assert by_code["ok"], by_code
    stored = await a.db.auth_children.find_one({"contract_number": number})
    assert code not in str(stored) and activation_code_digest(student, code) not in str(stored)
