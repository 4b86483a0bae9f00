"""Registration abuse, through the real broker and auth in-process: a repeated
StartRegistration for a pending phone must not set the password the victim's code then
activates; phones outside the countries auth serves (AUTH_PHONE_COUNTRIES, as notify's
NOTIFY_SMS_CODE_COUNTRIES) are refused with phone_country_not_served instead of being
accepted and never sent a code."""

from __future__ import annotations

import pytest

from contracts import auth as cmd
from tests.integration.test_auth_flows import (
    code_for,
    contract,
    error,
    issue_card,
    login,
    password,
    phone,
    send,
)
from tests.support import uid

pytestmark = pytest.mark.integration


async def test_a_repeated_registration_for_a_pending_phone_does_not_replace_its_password(auth):
    a = auth
    number, tel, victim_pw, attacker_pw = contract(), phone(), password(), password()
    await issue_card(a, number)
    started = await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel,
                                                  contract=number, password=victim_pw,
                                                  consent=True), tel)
    assert started["ok"]
    await code_for(a, tel)
    a.clock.advance(seconds=61)
    again = await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel,
                                                contract=number, password=attacker_pw,
                                                consent=True), tel)
    assert again["ok"]  # the same reply as ever
    latest = await code_for(a, tel, count=2)  # the victim types the newest SMS
    assert (await send(a, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel,
                                                  code=latest), tel))["ok"]
    assert error(await login(a, tel, attacker_pw)) == "invalid_credentials"
    # Nor does the first password survive (it may have been the attacker's): the phone's
    # holder sets one with a reset code.
    assert error(await login(a, tel, victim_pw)) == "invalid_credentials"
    a.clock.advance(seconds=61)
    await send(a, cmd.RequestPasswordReset(request_id=uid("q"), phone=tel), tel)
    reset = await code_for(a, tel, count=3)
    chosen = password()
    assert (await send(a, cmd.ConfirmPasswordReset(request_id=uid("z"), phone=tel, code=reset,
                                                   new_password=chosen), tel))["ok"]
    assert (await login(a, tel, chosen))["ok"]


async def test_a_repeat_with_the_same_password_keeps_it(auth):
    a = auth
    number, tel, pw = contract(), phone(), password()
    await issue_card(a, number)
    for _ in range(2):
        await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel, contract=number,
                                            password=pw, consent=True), tel)
        a.clock.advance(seconds=61)
    code = await code_for(a, tel, count=2)
    assert (await send(a, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel, code=code),
                       tel))["ok"]
    assert (await login(a, tel, pw))["ok"]


async def test_a_phone_abroad_is_refused_with_a_clear_code_and_sent_nothing(auth):
    a = auth
    number = contract()
    await issue_card(a, number)
    for tel in ("+12025550123", "+4915112345678"):
        started = await send(a, cmd.StartRegistration(request_id=uid("r"), phone=tel,
                                                      contract=number, password=password(),
                                                      consent=True), tel)
        assert error(started) == "phone_country_not_served"
        reset = await send(a, cmd.RequestPasswordReset(request_id=uid("q"), phone=tel), tel)
        assert error(reset) == "phone_country_not_served"
        assert await a.db.auth_accounts.find_one({"phone": tel}) is None
    await a.otp.poll()
    assert not [r for r in a.otp.records if r.key in ("+12025550123", "+4915112345678")]
