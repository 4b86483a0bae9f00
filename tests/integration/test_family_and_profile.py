"""The family and the account's sensitive changes end to end: the gateway's HTTP calls, the
real broker, auth in-process on the real MongoDB-protocol server (issue 17, "Accounts and
family"): registering with the contract and the birth date links the child; an invitation
waits for the invitee, who accepts it; the primary hands over; one session ends and the
others stay; sensitive changes need re-authentication; a contract login adds a phone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from types import SimpleNamespace

import httpx
import pytest

from contracts import auth as cmd
from services.gateway.app import Gateway
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.broker import provision_topics
from services.runtime.tokens import verify_access_token
from tests.integration.conftest import infra_settings
from tests.integration.test_auth_flows import (
    SECRETS,
    code_for,
    contract,
    issue_card,
    login,
    password,
    phone,
    register,
    send,
)
from tests.support import FakeClock, Integrator, Requester, TopicReader, uid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def family(service_runner, infra, bootstrap) -> AsyncIterator[SimpleNamespace]:
    """auth on the system clock (the gateway checks token expiry against it), the gateway,
    and the test's own Kafka clients for setting the scene."""
    await provision_topics(infra_settings(infra))
    settings = Settings(
        infra=GatewayInfra(kafka_bootstrap=infra["SCHOOLCARD_KAFKA_BOOTSTRAP"],
                           auth_public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"],
                           kafka_fetch_max_wait_ms=10, log_json=False),
        instance_id=f"it-{uuid.uuid4().hex[:8]}", request_timeout_s=60)
    async with service_runner("auth", private_key=infra["AUTH_PRIVATE_KEY"],
                              pepper=f"pepper-{uid()}") as svc, \
            Requester(bootstrap) as requester, Integrator(bootstrap) as integrator, \
            TopicReader(bootstrap, "notify.otp-requests.v1") as otp, \
            TopicReader(bootstrap, "auth.events.v1") as events:
        gw = Gateway(settings)
        await gw.start()
        try:
            yield SimpleNamespace(svc=svc, db=svc.runtime.db, req=requester, bootstrap=bootstrap,
                                  integrator=integrator, otp=otp, events=events, gw=gw,
                                  clock=FakeClock(datetime.now(UTC)),
                                  public_key=infra["SCHOOLCARD_AUTH_PUBLIC_KEY"])
        finally:
            await gw.stop()


def http(f: SimpleNamespace, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=f.gw.api), base_url="http://gw",
                             headers=headers, timeout=90)


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}


async def a_parent(f: SimpleNamespace, *, number: str | None = None) -> SimpleNamespace:
    """A registered, logged-in parent (linked to nobody unless the card is theirs)."""
    number, tel, pw = number or contract(), phone(), password()
    if await f.db.auth_children.find_one({"contract_number": number}) is None:
        await issue_card(f, number)
    await register(f, number, tel, pw)
    tokens = await login(f, tel, pw)
    assert tokens["ok"], tokens
    claims = verify_access_token(tokens["access_token"], f.public_key, audience="auth")
    return SimpleNamespace(phone=tel, password=pw, contract=number, account_id=claims.sub,
                           session_id=claims.sid, **tokens)


def children_of(f: SimpleNamespace, token: str) -> dict[str, str]:
    claims = verify_access_token(token, f.public_key, audience="auth")
    return {c.contract: c.role.value for c in claims.children}


async def test_registering_with_the_contract_and_the_birth_date_links_the_child(family):
    f = family
    number, tel, pw = contract(), phone(), password()
    await issue_card(f, number, born=date(2015, 5, 17))
    async with http(f) as client:
        started = await client.post("/v1/registrations", headers=key(), json={
            "phone": tel, "contract": number, "password": pw, "consent": True,
            "birth_date": "2015-05-17"})
        assert started.status_code == 202, started.text
        confirmed = await client.post("/v1/registrations/confirm", headers=key(), json={
            "phone": tel, "code": await code_for(f, tel)})
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["child_linked"] is True
    tokens = await login(f, tel, pw)
    assert children_of(f, tokens["access_token"]) == {number: "primary"}


async def test_a_second_registration_for_a_claimed_child_is_confirmed_and_links_nothing(family):
    f = family
    mum = await a_parent(f)
    linked = await send(f, cmd.LinkChild(request_id=uid("k"), contract=mum.contract,
                                         birth_date="2014-03-08"), mum.phone, mum.access_token)
    assert linked["ok"], linked
    tel, pw = phone(), password()
    started = await send(f, cmd.StartRegistration(
        request_id=uid("r"), phone=tel, contract=mum.contract, password=pw, consent=True,
        birth_date="2014-03-08"), tel)
    assert started["ok"]
    confirmed = await send(f, cmd.ConfirmRegistration(request_id=uid("c"), phone=tel,
                                                      code=await code_for(f, tel)), tel)
    assert confirmed["ok"] and confirmed["child_linked"] is False
    child = await f.db.auth_children.find_one({"contract_number": mum.contract})
    assert child["guardian_ids"] == [mum.account_id] and child["birth_date_failures"] == 1


async def test_an_invitation_waits_for_the_invitee_who_accepts_and_the_primary_hands_over(
        family):
    f = family
    mum = await a_parent(f)
    mum_token = (await send(f, cmd.LinkChild(request_id=uid("k"), contract=mum.contract,
                                             birth_date="2014-03-08"), mum.phone,
                            mum.access_token))["access_token"]
    dad = await a_parent(f)
    async with http(f, mum_token) as as_mum, http(f, dad.access_token) as as_dad:
        path = f"/v1/children/{mum.contract}"
        bare = await as_mum.post(f"{path}/invitations", headers=key(),
                                 json={"phone": dad.phone, "role": "co_guardian"})
        assert (bare.status_code, bare.json()["code"]) == (403, "reauthentication_required")
        invited = await as_mum.post(f"{path}/invitations", headers=key(), json={
            "phone": dad.phone, "role": "co_guardian",
            "reauth": {"password": mum.password}})
        assert invited.status_code == 200, invited.text
        invitation_id = invited.json()["invitation_id"]
        # not a guardian before accepting
        early = await as_dad.get(f"{path}/guardians")
        assert early.json()["code"] == "not_a_guardian"
        mine = (await as_dad.get("/v1/invitations")).json()["invitations"]
        assert [(i["invitation_id"], i["contract"], i["role"]) for i in mine] == [
            (invitation_id, mum.contract, "co_guardian")]
        accepted = await as_dad.post(f"{path}/invitations/{invitation_id}/accept",
                                     headers=key())
        assert accepted.status_code == 200, accepted.text
        assert children_of(f, accepted.json()["access_token"]) == {mum.contract: "co_guardian"}
        listed = (await as_mum.get(f"{path}/guardians")).json()
        assert [(g["account_id"], g["role"], g["you"]) for g in listed["guardians"]] == [
            (mum.account_id, "primary", True), (dad.account_id, "co_guardian", False)]
        assert listed["guardians"][1]["phone_hint"].endswith(dad.phone[-4:])
        assert dad.phone not in str(listed)
        handed = await as_mum.put(f"{path}/guardians/{dad.account_id}/role", headers=key(),
                                  json={"role": "primary"})
        assert handed.status_code == 200, handed.text
    child = await f.db.auth_children.find_one({"contract_number": mum.contract})
    assert {g["account_id"]: g["role"] for g in child["guardians"]} == {
        mum.account_id: "co_guardian", dad.account_id: "primary"}
    facts = await f.events.wait_for(lambda r: r.key == dad.account_id
                                    and r.type.endswith(".GuardianLinked"), count=2)
    assert {r.json()["role"] for r in facts} == {"co_guardian", "primary"}


async def test_ending_one_session_keeps_the_other_devices_signed_in(family):
    f = family
    p = await a_parent(f)
    tablet = await login(f, p.phone, p.password)
    async with http(f, p.access_token) as client:
        sessions = (await client.get("/v1/sessions")).json()["sessions"]
        assert len(sessions) == 2
        [other] = [s for s in sessions if not s["current"]]
        ended = await client.delete(f"/v1/sessions/{other['session_id']}", headers=key())
        assert ended.status_code == 200, ended.text
        left = (await client.get("/v1/sessions")).json()["sessions"]
        assert [s["session_id"] for s in left] == [p.session_id]
    refused = await send(f, cmd.RefreshSession(request_id=uid("f"),
                                               refresh_token=tablet["refresh_token"]), p.phone)
    assert refused["error"]["code"] == "session_revoked"
    kept = await send(f, cmd.RefreshSession(request_id=uid("f"),
                                            refresh_token=p.refresh_token), p.phone)
    assert kept["ok"], kept


async def test_a_code_word_reauthenticates_closing_and_a_wrong_one_is_refused(family):
    f = family
    p = await a_parent(f)
    word = f"heron {uid('w')}"
    SECRETS.add(word)
    async with http(f, p.access_token) as client:
        bare = await client.post("/v1/account/closure", headers=key(), json={})
        assert bare.json()["code"] == "reauthentication_required"
        set_word = await client.put("/v1/account/code-word", headers=key(), json={
            "code_word": word, "reauth": {"password": p.password}})
        assert set_word.status_code == 200, set_word.text
        wrong = await client.post("/v1/account/closure", headers=key(),
                                  json={"reauth": {"code_word": "not the word"}})
        assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_credentials")
        assert (await f.db.auth_accounts.find_one({"_id": p.account_id}))["status"] == "active"
        closed = await client.post("/v1/account/closure", headers=key(),
                                   json={"reauth": {"code_word": word}})
        assert closed.status_code == 200, closed.text
    stored = await f.db.auth_accounts.find_one({"_id": p.account_id})
    assert stored["status"] == "closed" and stored["code_word_hash"] is None


async def test_a_contract_login_adds_a_phone_with_a_code_sent_to_it_and_then_logs_in_by_it(
        family):
    f = family
    number, tel = contract(), phone()
    await issue_card(f, number, born=date(2013, 11, 2), initial_password_is_birth_date=True)
    SECRETS.add("02112013")
    first = await send(f, cmd.Login(request_id=uid("l"), login=number, password="02112013"),
                       number)
    pw = password()
    changed = await send(f, cmd.ChangePassword(request_id=uid("p"), current_password="02112013",
                                               new_password=pw), number, first["access_token"])
    assert changed["ok"], changed
    async with http(f, changed["access_token"]) as client:
        started = await client.post("/v1/account/phone", headers=key(), json={"phone": tel})
        assert started.status_code == 200, started.text
        code = await code_for(f, tel)
        confirmed = await client.post("/v1/account/phone/confirm", headers=key(),
                                      json={"code": code})
        assert confirmed.status_code == 200, confirmed.text
    by_phone = await login(f, tel, pw)
    assert by_phone["ok"] and children_of(f, by_phone["access_token"]) == {number: "primary"}


async def test_the_e_mail_is_added_over_http_with_the_code_sent_to_it_and_replaced_after_reauth(
        family):
    f = family
    p = await a_parent(f)
    first, second = f"{uid('mum')}@example.ru", f"{uid('mum')}@example.ru"
    async with http(f, p.access_token) as client:
        started = await client.post("/v1/account/email", headers=key(), json={"email": first})
        assert started.status_code == 200, started.text
        code = await code_for(f, first)
        wrong = await client.post("/v1/account/email/confirm", headers=key(),
                                  json={"code": f"{(int(code) + 1) % 10**6:06d}"})
        assert (wrong.status_code, wrong.json()["code"]) == (422, "code_invalid"), wrong.text
        confirmed = await client.post("/v1/account/email/confirm", headers=key(),
                                      json={"code": code})
        assert confirmed.status_code == 200, confirmed.text
        bare = await client.post("/v1/account/email", headers=key(), json={"email": second})
        assert (bare.status_code, bare.json()["code"]) == (403, "reauthentication_required")
        again = await client.post("/v1/account/email", headers=key(), json={
            "email": second, "reauth": {"password": p.password}})
        assert again.status_code == 200, again.text
        assert await code_for(f, second)
        profile = await client.get("/v1/account/profile")
    assert profile.json()["email"] == first  # the second waits for its code


async def test_the_profile_keeps_the_language_time_zone_and_the_familys_name_for_the_child(
        family):
    f = family
    p = await a_parent(f)
    linked = await send(f, cmd.LinkChild(request_id=uid("k"), contract=p.contract,
                                         birth_date="2014-03-08"), p.phone, p.access_token)
    async with TopicReader(f.bootstrap, "auth.guardian-contacts.v1") as contacts, \
            http(f, linked["access_token"]) as client:
        changed = await client.patch("/v1/account/profile", headers=key(), json={
            "locale": "en", "time_zone": "Asia/Yekaterinburg"})
        assert changed.status_code == 200, changed.text
        named = await client.put(f"/v1/children/{p.contract}/name", headers=key(),
                                 json={"display_name": "Маша"})
        assert named.status_code == 200, named.text
        profile = (await client.get("/v1/account/profile")).json()
        assert (profile["locale"], profile["time_zone"], profile["phone"]) == (
            "en", "Asia/Yekaterinburg", p.phone)
        assert profile["children"] == [{"contract": p.contract, "role": "primary",
                                        "display_name": "Маша"}]
        told = await contacts.wait_for(
            lambda r: r.key == p.account_id and r.json()["locale"] == "en")
        assert told[0].json()["time_zone"] == "Asia/Yekaterinburg"
