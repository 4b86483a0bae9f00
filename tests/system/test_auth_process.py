"""auth as its own process: the registration-to-token flow another service relies on, then
a scan of every log file of the run and every topic record for the passwords and one-time
codes the auth tests used."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from contracts import auth as cmd
from contracts.integrations import CardIssued
from services.auth.security import parse_argon2_hash
from services.runtime.authorization import authorize
from services.runtime.tokens import TokenError, verify_access_token
from tests.integration.test_auth_flows import REPLY_SECRETS, SECRETS
from tests.support import (
    Integrator,
    Requester,
    TopicReader,
    all_records,
    chip_uid,
    eventually,
    uid,
)

pytestmark = pytest.mark.system

ALLOWED = {
    "auth.commands.v1": "all",  # what clients sent: passwords and codes, by design
    "notify.otp-requests.v1": "codes",  # the one topic meant for codes (never passwords)
}
CLIENT_REPLY_TOPIC = re.compile(r"apps\.replies\.[a-z0-9-]+\.v1")
"""A requester's own reply topic: TOTP secrets and session tokens go back to their owner
there, never on the shared apps.replies.v1 every app reads."""


async def test_a_parent_registered_through_the_auth_process_gets_a_token_other_services_accept(
        start_service, bootstrap, mongo, infra):
    start_service("auth", env={"AUTH_PEPPER": f"pepper-{uid()}"})
    number = f"{random.randrange(10**7, 10**8)}"
    phone = f"+7912{random.randrange(10**6, 10**7)}"
    password = f"otter {uid('pw')} paddles"
    SECRETS.add(password)
    card = CardIssued(contract=number, card_uid=chip_uid(),
                      school_id="izh-school-42", school_tz="Europe/Samara",
                      student_id=uid("stu"), class_name="5Б", birth_date=date(2014, 3, 8),
                      issued_at=datetime.now(UTC))
    async with Integrator(bootstrap) as integrator, Requester(bootstrap) as req, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp:
        await integrator.publish(card, number)
        await eventually(lambda: _async(mongo.schoolcard_auth.auth_children.find_one(
            {"contract_number": number})), what="the child")
        started = await req.send(cmd.StartRegistration(request_id=uid("r"), phone=phone,
                                                       contract=number, password=password,
                                                       consent=True), phone)
        assert started.json()["ok"]
        [sms] = (await otp.wait_for(lambda r: r.key == phone))[:1]
        code = str(sms.json()["code"])
        SECRETS.add(code)
        confirmed = await req.send(cmd.ConfirmRegistration(request_id=uid("c"), phone=phone,
                                                           code=code), phone)
        assert confirmed.json()["ok"], confirmed.json()
        tokens = (await req.send(cmd.Login(request_id=uid("l"), login=phone,
                                           password=password), phone)).json()
        assert tokens["ok"], tokens
        linked = (await req.send(cmd.LinkChild(request_id=uid("k"), contract=number,
                                               birth_date="2014-03-08"), phone,
                                 token=tokens["access_token"])).json()
        assert linked["ok"], linked
    claims = verify_access_token(linked["access_token"], infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                                 audience="auth")
    authorize(claims, "top_up", contract=number)
    with pytest.raises(TokenError):
        authorize(claims, "top_up", contract=f"{random.randrange(10**7, 10**8)}")
    stored = mongo.schoolcard_auth.auth_accounts.find_one({"phone": phone})
    params = parse_argon2_hash(stored["password_hash"])
    assert (params.variant, params.memory_cost_kib, params.time_cost, params.parallelism) == (
        "argon2id", 19456, 2, 1)
    assert password not in str(stored) and code not in str(stored)


async def test_no_password_or_code_of_the_auth_tests_is_in_any_log_or_topic(bootstrap, run_dir):
    assert SECRETS, "run with the other auth tests (they record what they used)"
    everything = SECRETS | REPLY_SECRETS
    patterns = {s: re.compile(rf"(?<![0-9A-Za-z.]){re.escape(s)}(?![0-9A-Za-z])")
                for s in everything}
    codes = {s for s in SECRETS if re.fullmatch(r"\d{6}", s)}
    refused = {"codes": everything - codes, "replies": SECRETS}

    def found_in(text: str, secrets: set[str]) -> set[str]:
        return {s for s in secrets if patterns[s].search(text)}

    leaks: dict[str, set[str]] = {}
    logs = sorted(Path(run_dir, "logs").glob("*.log"))
    assert {"auth.log", "auth-in-process.log"} <= {p.name for p in logs}
    for log in logs:
        hits = found_in(log.read_text(errors="replace"), everything)
        if hits:
            leaks[log.name] = hits
    records = await all_records(bootstrap)
    # The scan sees the secrets where they are meant to be, so it would see them elsewhere.
    assert found_in(records["auth.commands.v1"], SECRETS)
    assert found_in(records["notify.otp-requests.v1"], codes)
    if REPLY_SECRETS:
        assert found_in("".join(t for name, t in records.items()
                                if CLIENT_REPLY_TOPIC.fullmatch(name)), REPLY_SECRETS)
    for topic, text in records.items():
        allowed = "replies" if CLIENT_REPLY_TOPIC.fullmatch(topic) else ALLOWED.get(topic)
        if allowed == "all":
            continue
        hits = found_in(text, refused.get(allowed or "", everything))
        if hits:
            leaks[topic] = hits
    assert leaks == {}


async def _async(value):  # type: ignore[no-untyped-def]
    return value
