"""Malicious lockout, through the real broker and auth in-process with a scripted clock: an
attacker guessing the owner's password at one try a second (from one address, then from a new
address every try) must not keep the owner out of their known phone; wrong reset codes sent
while no code is outstanding must not block the owner's code; support's UnlockAccount opens an
account whose ceiling strangers filled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from contracts import auth as cmd
from tests.integration.test_auth_flows import (
    code_for,
    error,
    login,
    parent,
    password,
    send,
    staff,
)
from tests.support import eventually, uid

pytestmark = pytest.mark.integration

OWNER_DEVICE = "Android 14, SchoolCard 2.4"  # the one parent() logged in from (helper login)
OWNER_IP = "10.0.0.7"


async def scripted(a: Any, stamped: list[tuple[Any, Any]], key: str) -> list[dict[str, Any]]:
    """Publish ``(instant, command)`` pairs at once, each handled at its instant (the scripted
    clock hands one per message), and the replies in the same order."""
    a.clock.script = [at for at, _ in stamped]
    order = []
    for _, message in stamped:
        env = await a.req.integrator.publish(message, key, reply_to=a.req.reply_topic)
        order.append(env.correlation_id)
    ids = set(order)

    async def answered() -> dict[str, Any] | None:
        await a.req.replies.poll()  # copies of a reply (at-least-once relay) share its id
        found = {r.headers["ce_correlationid"]: r for r in a.req.replies.records
                 if r.headers.get("ce_correlationid") in ids}
        return found if len(found) == len(ids) else None

    replies = await eventually(answered, timeout=240, what=f"{len(ids)} replies")
    assert not a.clock.script  # every message was handled at its instant
    return [replies[c].json() for c in order]


def owner_login(p: Any, device: str = OWNER_DEVICE, ip: str = OWNER_IP) -> cmd.Login:
    """From the owner's phone: it presents the device token its first login got; another
    device has none."""
    token = p.device_token if device == OWNER_DEVICE else None
    return cmd.Login(request_id=uid("own"), login=p.phone, password=p.password, device=device,
                     ip=ip, device_token=token)


def guess(p: Any, ip: str) -> cmd.Login:
    return cmd.Login(request_id=uid("atk"), login=p.phone, password=f"guess {uid()}",
                     device="python-requests/2.32", ip=ip)


async def attack(a: Any, p: Any, *, seconds: int, ip: Any) -> tuple[list[dict[str, Any]],
                                                                      list[dict[str, Any]]]:
    """One wrong password a second for ``seconds`` (from ``ip(second)``) while the owner logs
    in from the known phone every 10 s; the attacker's and the owner's replies."""
    start = a.clock.now
    stamped: list[tuple[Any, Any]] = []
    owner_at: list[int] = []
    for second in range(1, seconds + 1):
        at = start + timedelta(seconds=second)
        stamped.append((at, guess(p, ip(second))))
        if second % 10 == 0:
            owner_at.append(len(stamped))
            stamped.append((at, owner_login(p)))
    replies = await scripted(a, stamped, p.phone)
    owner = [replies[i] for i in owner_at]
    attacker = [r for i, r in enumerate(replies) if i not in set(owner_at)]
    return attacker, owner


async def test_an_attacker_at_one_guess_a_second_does_not_keep_the_owner_out(auth, capsys):
    a = auth
    p = await parent(a, link=False)  # logged in once from OWNER_DEVICE: its token is trusted

    # One address, one guess a second for 200 s; the owner logs in every 10 s.
    attacker, owner = await attack(a, p, seconds=200, ip=lambda s: "203.0.113.9")
    rate = sum(r["ok"] for r in owner) / len(owner)
    processed = sum(1 for r in attacker if not r["ok"]
                    and r["error"]["code"] == "invalid_credentials")
    with capsys.disabled():
        print(f"\n[lockout] one address, 1 guess/s for 200 s: owner logged in "
              f"{sum(r['ok'] for r in owner)}/{len(owner)} ({rate:.0%}); attacker's guesses "
              f"checked {processed}/{len(attacker)}")
    assert rate >= 0.99, owner
    assert processed <= 20  # the attacker's own window: 5 free, then delays, 20 an hour
    assert {error(r) for r in attacker} <= {"invalid_credentials", "login_delayed",
                                            "login_rate_limited"}

    # A new address for every guess: the account's ceiling (100 an hour) stops the guessing,
    # and the owner's known phone passes it.
    attacker, owner = await attack(a, p, seconds=200, ip=lambda s: f"198.51.{s // 250}.{s % 250}")
    spread_rate = sum(r["ok"] for r in owner) / len(owner)
    checked = sum(1 for r in attacker if r["error"]["code"] == "invalid_credentials")
    with capsys.disabled():
        print(f"[lockout] new address per guess, 1 guess/s for 200 s: owner logged in "
              f"{sum(r['ok'] for r in owner)}/{len(owner)} ({spread_rate:.0%}); attacker's "
              f"guesses checked {checked}/{len(attacker)}")
    assert spread_rate >= 0.99, owner
    assert checked == 100 - processed  # both phases share the hour's ceiling
    assert [error(r) for r in attacker[-50:]] == ["login_rate_limited"] * 50
    # A device the owner never used meets the ceiling like a stranger...
    laptop = await send(a, owner_login(p, device="Firefox 140, Linux", ip="192.0.2.44"),
                        p.phone)
    assert error(laptop) == "login_rate_limited"
    # ...until support, having checked who calls, unlocks the account.
    agent = await staff(a)
    unlock = cmd.UnlockAccount(request_id=uid("u"), login=p.phone,
                               reason=f"Locked out by guessing; call-back, ticket {uid('SUP')}")
    assert error(await send(a, unlock, p.phone, owner[-1]["access_token"])) == "forbidden"
    assert (await send(a, unlock, p.phone, agent.access_token))["ok"]
    assert (await send(a, owner_login(p, device="Firefox 140, Linux", ip="192.0.2.44"),
                       p.phone))["ok"]
    stored = await a.db.auth_accounts.find_one({"phone": p.phone})
    assert stored["password_failures"] == [] and stored["unlocks"][0]["by_account_id"] == (
        agent.account_id)


async def test_wrong_reset_codes_sent_while_no_code_is_outstanding_do_not_block_the_owner(auth):
    a = auth
    p = await parent(a, link=False)
    now = a.clock.now
    stamped = [(now + timedelta(seconds=i), cmd.ConfirmPasswordReset(
        request_id=uid("z"), phone=p.phone, code=f"{i:06d}", new_password=password()))
        for i in range(100)]
    replies = await scripted(a, stamped, p.phone)
    assert [error(r) for r in replies] == ["code_invalid"] * 100
    a.clock.advance(seconds=101)
    await send(a, cmd.RequestPasswordReset(request_id=uid("q"), phone=p.phone), p.phone)
    code = await code_for(a, p.phone, count=2)  # the first was the registration's
    new = password()
    done = await send(a, cmd.ConfirmPasswordReset(request_id=uid("z"), phone=p.phone,
                                                  code=code, new_password=new), p.phone)
    assert done["ok"], done
    assert (await login(a, p.phone, new))["ok"]
