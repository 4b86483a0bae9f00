"""An integrator account acts for one transport operator: support names it when creating the
account, auth keeps it with the account and puts it in every access token, and transit
refuses the integrator any other operator's fare rules. Through the real broker, with auth
and transit in-process (auth as in tests/integration/test_auth_flows.py; transit reads the
same fake clock, so auth's tokens are fresh there)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from contracts import auth as cmd
from contracts.transit import SetFareRules
from services.runtime.tokens import verify_access_token
from services.transit.domain import parse_fare_rules
from services.transit.settings import DEFAULT_RULES
from tests.integration.test_auth_flows import auth, error, password, send, staff
from tests.support import Requester, eventually, uid

__all__ = ["auth"]  # the module's fixture: auth in-process with a fake clock

pytestmark = pytest.mark.integration

TEMPLATE = next(iter(parse_fare_rules(json.loads(DEFAULT_RULES.read_text())).values()))


@pytest.fixture(scope="module")
async def transit(service_runner, auth, bootstrap) -> AsyncIterator[SimpleNamespace]:
    async with service_runner("transit", clock=lambda: auth.clock.now) as svc, \
            Requester(bootstrap) as app:
        yield SimpleNamespace(db=svc.runtime.db, app=app)


def rules_for(operator_id: str) -> dict[str, Any]:
    """A whole rules document of ``operator_id`` (the shipped one, renamed)."""
    return {**TEMPLATE.to_doc(), "operator_id": operator_id}


async def integrator_of(a: SimpleNamespace, agent: SimpleNamespace,
                        operator_id: str) -> SimpleNamespace:
    """An integrator account support created for ``operator_id``, logged in."""
    login, secret = uid("gortrans"), password()
    created = await send(a, cmd.CreateStaffAccount(
        request_id=uid("n"), login=login, password=secret, role=cmd.Role.INTEGRATOR,
        operator_id=operator_id), agent.login, agent.access_token)
    assert created["ok"], created
    tokens = await send(a, cmd.Login(request_id=uid("l"), login=login, password=secret), login)
    assert tokens["ok"], tokens
    return SimpleNamespace(login=login, access_token=tokens["access_token"])


async def set_rules(t: SimpleNamespace, operator_id: str, token: str) -> dict[str, Any]:
    reply = await t.app.send(SetFareRules(request_id=uid("r"), operator_id=operator_id,
                                          version=1, rules=rules_for(operator_id)),
                             operator_id, token=token, timeout=90)  # transit may still join
    return dict(reply.json())


async def test_an_integrator_of_one_operator_cannot_set_another_operators_fare_rules(auth,
                                                                                    transit):
    a, t = auth, transit
    mine, theirs = uid("op-a"), uid("op-b")
    agent = await staff(a)
    bus = await integrator_of(a, agent, mine)
    claims = verify_access_token(bus.access_token, a.public_key, audience="transit",
                                 now=a.clock.now.timestamp())
    assert (claims.role, claims.operator_id) == (cmd.Role.INTEGRATOR, mine)

    refused = await set_rules(t, theirs, bus.access_token)
    assert error(refused) == "forbidden"
    assert await t.db.transit_fare_rules.find_one({"_id": theirs}) is None

    accepted = await set_rules(t, mine, bus.access_token)
    assert accepted["ok"], accepted
    stored = await eventually(lambda: t.db.transit_fare_rules.find_one({"_id": mine}),
                              what="the integrator's own rules stored")
    assert (stored["source"], stored["version"]) == ("command", 1)
    # Support is bound to no operator: the other operator's rules are its to set.
    assert (await set_rules(t, theirs, agent.access_token))["ok"]


async def test_support_cannot_create_an_unbound_integrator_nor_bind_a_staff_account(auth):
    a = auth
    agent = await staff(a)
    unbound, bound_staff = uid("gortrans"), uid("canteen")
    refused = await send(a, cmd.CreateStaffAccount(
        request_id=uid("n"), login=unbound, password=password(), role=cmd.Role.INTEGRATOR),
        agent.login, agent.access_token)
    assert error(refused) == "invalid_role"
    refused = await send(a, cmd.CreateStaffAccount(
        request_id=uid("n"), login=bound_staff, password=password(),
        role=cmd.Role.CANTEEN_OPERATOR, school_id="izh-school-42",
        operator_id="izhevsk-gortrans"), agent.login, agent.access_token)
    assert error(refused) == "invalid_role"
    for login in (unbound, bound_staff):
        assert await a.db.auth_accounts.find_one({"username": login}) is None
