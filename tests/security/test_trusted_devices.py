"""Known devices are known by a device token, not by a name and an address anyone can send:
a successful login returns a token (stored only hashed by auth); presenting it again makes the
login a trusted device's (no "new login" alert, the account's failure ceiling does not apply);
the owner lists, renames and revokes trusted devices. Pure rules, the handlers over the fakes,
and auth through the real broker."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import auth as cmd
from services.auth.domain import (
    Account,
    AccountKind,
    AccountStatus,
    AuthRejected,
    DeviceProof,
    Reason,
    TrustedDevices,
)
from services.auth.domain.events import NewLoginDetected
from services.auth.security import AccessRole, hash_token
from tests.integration.test_auth_flows import error, parent, refresh, send
from tests.support import uid

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def _parent() -> Account:
    return Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79120000001",
                   password_hash="HASH")


def _login(account: Account, ok: bool, now: datetime, *, presented: str | None,
           new: str = "tok-new", source: str = "src") -> Any:
    proof = DeviceProof(presented_hash=presented, new_device_id=f"dev-{new}",
                        new_token_hash=new)
    return account.login(password_ok=ok, now=now, session_id=f"s-{now.timestamp()}",
                         refresh_token_hash="rt", device="Android 14", ip_hash="ip",
                         source=source, device_proof=proof)


def _sid(tokens: dict[str, Any]) -> str:
    """The session id in an access token's claims (read, not verified: auth signed it)."""
    payload = tokens["access_token"].split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"])


def _new_login(account: Account) -> bool:
    [event] = [e for e in account.pull_events() if isinstance(e, NewLoginDetected)]
    return event.new_device


# --- the rules --------------------------------------------------------------------------------

@pytest.mark.unit
def test_the_first_login_trusts_the_device_and_its_token_makes_the_next_one_known() -> None:
    account = _parent()
    first = _login(account, True, T0, presented=None, new="tok-a")
    assert first.new_device and first.device_id == "dev-tok-a" and _new_login(account)
    again = _login(account, True, T0 + timedelta(minutes=5), presented="tok-a", new="tok-b")
    assert not again.new_device and again.device_id == "dev-tok-a"
    assert not _new_login(account)
    [device] = account.trusted_devices.listed()
    assert device.last_seen_at == T0 + timedelta(minutes=5) and device.token_hash == "tok-a"


@pytest.mark.unit
def test_an_unknown_token_or_the_same_name_and_address_is_a_new_device() -> None:
    account = _parent()
    _login(account, True, T0, presented=None, new="tok-a")
    account.pull_events()
    assert _login(account, True, T0 + timedelta(minutes=1), presented="forged",
                  new="tok-b").new_device
    assert _new_login(account)
    assert len(account.trusted_devices.listed()) == 2


@pytest.mark.unit
def test_a_failed_login_trusts_nothing() -> None:
    account = _parent()
    assert not _login(account, False, T0, presented=None).reply.ok
    assert account.trusted_devices.listed() == []


@pytest.mark.unit
def test_only_a_trusted_devices_token_passes_the_account_ceiling() -> None:
    account = _parent()
    _login(account, True, T0, presented=None, new="tok-owner", source="owner")
    for i in range(150):  # guesses from 150 addresses fill the hour's ceiling
        _login(account, False, T0 + timedelta(seconds=i), presented=None, source=f"atk-{i}")
    now = T0 + timedelta(seconds=151)
    # the owner's device name and address again, without the token: a stranger
    assert _login(account, True, now, presented=None, source="owner").reply.reason is (
        Reason.LOGIN_RATE_LIMITED)
    assert _login(account, True, now, presented="tok-owner", source="owner").reply.ok


@pytest.mark.unit
def test_a_revoked_device_is_a_stranger_again_and_a_renamed_one_keeps_its_token() -> None:
    account = _parent()
    _login(account, True, T0, presented=None, new="tok-a")
    [device] = account.trusted_devices.listed()
    account.trusted_devices.rename(device.device_id, "  Телефон мамы ")
    assert account.trusted_devices.listed()[0].name == "Телефон мамы"
    assert account.trusted_devices.find("tok-a") is not None
    account.trusted_devices.revoke(device.device_id)
    assert account.trusted_devices.find("tok-a") is None
    account.pull_events()
    assert _login(account, True, T0 + timedelta(minutes=1), presented="tok-a",
                  new="tok-c").new_device
    with pytest.raises(AuthRejected) as gone:
        account.trusted_devices.revoke(device.device_id)
    assert gone.value.reason is Reason.DEVICE_NOT_FOUND
    with pytest.raises(AuthRejected) as blank:
        account.trusted_devices.rename("dev-tok-c", "   ")
    assert blank.value.reason is Reason.DEVICE_NAME_INVALID


@pytest.mark.unit
def test_revoking_a_device_ends_its_sessions_and_leaves_the_other_devices_signed_in() -> None:
    account = _parent()
    on_a = _login(account, True, T0, presented=None, new="tok-a").session
    on_b = _login(account, True, T0 + timedelta(minutes=1), presented=None, new="tok-b").session
    again_a = _login(account, True, T0 + timedelta(minutes=2), presented="tok-a",
                     new="tok-x").session
    assert (on_a.device_id, on_b.device_id, again_a.device_id) == ("dev-tok-a", "dev-tok-b",
                                                                   "dev-tok-a")
    stored_before = _parent()  # a session of a login before sessions kept their device
    old = _login(stored_before, True, T0, presented=None, new="tok-a").session
    old.device_id = None
    later = T0 + timedelta(minutes=3)
    ended = account.revoke_trusted_device("dev-tok-a", [on_a, on_b, again_a, old], later)
    assert ended == [on_a, again_a]
    assert [e.reason for s in ended for e in s.pull_events()
            if type(e).__name__ == "SessionRevoked"] == ["device_revoked"] * 2
    assert on_b.is_active(later, account.session_epoch) and old.revoked_at is None
    assert not on_a.is_active(later, account.session_epoch)
    with pytest.raises(AuthRejected) as gone:  # a second revoke: the device is gone
        account.revoke_trusted_device("dev-tok-a", [on_a, on_b], later)
    assert gone.value.reason is Reason.DEVICE_NOT_FOUND


@pytest.mark.unit
def test_at_most_twenty_devices_are_kept_the_one_seen_longest_ago_goes_first() -> None:
    devices = TrustedDevices()
    for i in range(21):
        devices.seen(DeviceProof(None, f"dev-{i}", f"tok-{i}"), name=f"d{i}",
                     now=T0 + timedelta(minutes=i))
    assert len(devices.devices) == 20 and devices.find("tok-0") is None
    assert devices.listed()[0].device_id == "dev-20"
    restored = TrustedDevices.from_doc(devices.to_doc())
    assert restored.to_doc() == devices.to_doc()


@pytest.mark.unit
def test_the_account_document_keeps_trusted_devices_and_closing_forgets_them() -> None:
    account = _parent()
    _login(account, True, T0, presented=None, new="tok-a")
    assert Account.from_doc(account.to_doc()).trusted_devices.find("tok-a") is not None
    assert account.close(now=T0 + timedelta(days=1))
    assert account.trusted_devices.listed() == []


# --- the handlers over the fakes ----------------------------------------------------------------

@pytest.mark.unit
async def test_the_handlers_hand_out_a_token_store_its_hash_and_list_rename_revoke() -> None:
    from tests.unit.auth.test_auth_handlers import (
        PASSWORD,
        PHONE,
        _auth,
        _forget,
        _registered,
        _req,
        _tokens,
    )

    rt, h = _auth()
    p = await _registered(rt, h)
    stored = await rt.db.auth_accounts.find_one({"_id": p.account_id})
    [kept] = stored["trusted_devices"]

    async def log_in(token: str | None) -> cmd.SessionTokens:
        _forget(rt)
        await h.on_login(_req(rt, cmd.Login(request_id=uid("l"), login=PHONE, password=PASSWORD,
                                            device="Android 14", device_token=token),
                              key=PHONE))
        return _tokens(rt)

    fresh = await log_in(None)
    assert fresh.device_token is not None
    token = fresh.device_token.get_secret_value()
    stored = await rt.db.auth_accounts.find_one({"_id": p.account_id})
    hashes = [d_["token_hash"] for d_ in stored["trusted_devices"]]
    assert hash_token(token) in hashes and token not in str(stored)  # only its hash is kept
    assert kept["token_hash"] in hashes
    assert any(m.TYPE == cmd.LoginSucceeded.TYPE for m in rt.emitted())  # a new device
    known = await log_in(token)
    assert known.device_token is not None and known.device_token.get_secret_value() == token
    assert not any(m.TYPE == cmd.LoginSucceeded.TYPE for m in rt.emitted())  # no alert

    _forget(rt)
    await h.on_list_trusted_devices(_req(rt, cmd.ListTrustedDevices(), key=PHONE,
                                         token=p.token))
    listed = rt.reply()
    assert isinstance(listed, cmd.TrustedDevicesReply)
    assert len(listed.devices) == 2
    target = next(x for x in listed.devices
                  if x.device_id == next(d_["device_id"] for d_ in stored["trusted_devices"]
                                         if d_["token_hash"] == hash_token(token)))
    _forget(rt)
    await h.on_rename_trusted_device(_req(rt, cmd.RenameTrustedDevice(
        request_id=uid("rn"), device_id=target.device_id, name="Планшет"), key=PHONE,
        token=p.token))
    _forget(rt)
    await h.on_revoke_trusted_device(_req(rt, cmd.RevokeTrustedDevice(
        request_id=uid("rv"), device_id=target.device_id), key=PHONE, token=p.token))
    stored = await rt.db.auth_accounts.find_one({"_id": p.account_id})
    assert [d_["device_id"] for d_ in stored["trusted_devices"]] == [kept["device_id"]]
    again = await log_in(token)  # revoked: a new device, with a new token
    assert again.device_token is not None and again.device_token.get_secret_value() != token
    assert any(m.TYPE == cmd.LoginSucceeded.TYPE for m in rt.emitted())
    _forget(rt)
    await h.on_revoke_trusted_device(_req(rt, cmd.RevokeTrustedDevice(
        request_id=uid("rv"), device_id=target.device_id), key=PHONE, token=p.token))
    assert rt.error_code() == "device_not_found"


# --- auth through the broker -------------------------------------------------------------------

@pytest.mark.integration
async def test_through_the_broker_a_trusted_device_logs_in_without_an_alert(auth) -> None:
    a = auth
    p = await parent(a, link=False)
    assert p.device_token, "the first login returns a device token"

    def login(token: str | None) -> cmd.Login:
        return cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                         device="Android 14, SchoolCard 2.4", ip="10.0.0.7",
                         device_token=token)

    known = await send(a, login(p.device_token), p.phone)
    assert known["ok"] and known["device_token"] == p.device_token
    other = await send(a, login(None), p.phone)  # same name and address, no token
    assert other["ok"] and other["device_token"] not in (None, p.device_token)

    account_id = (await a.db.auth_accounts.find_one({"phone": p.phone}))["_id"]

    def alert(r: Any) -> bool:
        return r.headers.get("ce_type") == cmd.LoginSucceeded.TYPE and r.json()[
            "account_id"] == account_id

    # the tokenless login's alert comes after the trusted one's would have (one account key)
    await a.events.wait_for(lambda r: alert(r) and r.json()["session_id"] == _sid(other))
    alerted = {r.json()["session_id"] for r in a.events.records if alert(r)}
    assert alerted == {_sid(p.__dict__), _sid(other)}  # not the trusted device's login

    listed = await send(a, cmd.ListTrustedDevices(), p.phone, known["access_token"])
    assert len(listed["devices"]) == 2
    sessions = await send(a, cmd.ListSessions(), p.phone, known["access_token"])
    # the tokenless login's device (revoking the one `known` uses would sign it out)
    [device_id] = [x["device_id"] for x in sessions["sessions"]
                   if x["session_id"] == _sid(other)]
    assert device_id in {d_["device_id"] for d_ in listed["devices"]}
    renamed = await send(a, cmd.RenameTrustedDevice(request_id=uid("rn"), device_id=device_id,
                                                    name="Телефон мамы"),
                         p.phone, known["access_token"])
    assert renamed["ok"], renamed
    revoked = await send(a, cmd.RevokeTrustedDevice(request_id=uid("rv"), device_id=device_id),
                         p.phone, known["access_token"])
    assert revoked["ok"], revoked
    listed = await send(a, cmd.ListTrustedDevices(), p.phone, known["access_token"])
    assert [d_["device_id"] for d_ in listed["devices"]] != [] and device_id not in {
        d_["device_id"] for d_ in listed["devices"]}
    gone = await send(a, cmd.RevokeTrustedDevice(request_id=uid("rv"), device_id=device_id),
                      p.phone, known["access_token"])
    assert error(gone) == "device_not_found"


@pytest.mark.integration
async def test_through_the_broker_revoking_a_lost_phone_signs_it_out_and_only_it(auth) -> None:
    a = auth
    p = await parent(a, link=False)  # the phone, later lost
    laptop = await send(a, cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                                     device="Firefox 133"), p.phone)
    assert laptop["ok"], laptop
    sessions = await send(a, cmd.ListSessions(), p.phone, laptop["access_token"])
    device_of = {x["session_id"]: x["device_id"] for x in sessions["sessions"]}
    phone_sid, laptop_sid = _sid(p.__dict__), _sid(laptop)
    assert device_of[phone_sid] and device_of[laptop_sid] and (
        device_of[phone_sid] != device_of[laptop_sid])
    assert {x["session_id"]: x["device_name"] for x in sessions["sessions"]} == {
        phone_sid: "Android 14, SchoolCard 2.4", laptop_sid: "Firefox 133"}

    revoke = cmd.RevokeTrustedDevice(request_id=uid("rv"), device_id=device_of[phone_sid])
    revoked = await send(a, revoke, p.phone, laptop["access_token"])
    assert revoked["ok"], revoked
    # the app lost the reply and retries with the same request id: answered alike
    assert (await send(a, revoke, p.phone, laptop["access_token"]))["ok"]
    assert error(await refresh(a, p.refresh_token, p.phone)) in {
        "session_revoked", "refresh_token_invalid"}
    assert (await refresh(a, laptop["refresh_token"], p.phone))["ok"]
    ended = await a.events.wait_for(
        lambda r: r.headers.get("ce_type") == cmd.SessionEnded.TYPE
        and r.json()["session_id"] == phone_sid)
    assert {r.json()["reason"] for r in ended} == {"device_revoked"}
    assert not [r for r in a.events.records if r.headers.get("ce_type") == cmd.SessionEnded.TYPE
                and r.json()["session_id"] == laptop_sid]
    left = await send(a, cmd.ListSessions(), p.phone, laptop["access_token"])
    assert [x["session_id"] for x in left["sessions"]] == [laptop_sid]
