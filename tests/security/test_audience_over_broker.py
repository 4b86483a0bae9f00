"""Through the real broker: transit (in-process, real MongoDB-protocol server) answers a query
whose token names it in ``aud`` and refuses the same holder's token minted for other services
with the error code ``wrong_audience``; a token of a key it does not hold is ``unknown_key``."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.auth import ChildGrant, Role
from contracts.transit import GetRides
from contracts.types import GuardianRole
from services.runtime.tokens import generate_keypair, issue_access_token
from tests.support import Requester, uid

pytestmark = pytest.mark.integration


@pytest.fixture
async def transit(service_runner: Any) -> AsyncIterator[None]:
    async with service_runner("transit"):
        yield


def parent_token(private_key: str, contract: str, **claims: Any) -> str:
    return issue_access_token(private_key, account_id=f"acc_{uid('a')[2:]}",
                              session_id=uid("s"), role=Role.PARENT,
                              children=[ChildGrant(contract=contract,
                                                   role=GuardianRole.PRIMARY)], **claims)


async def test_transit_refuses_a_token_whose_audience_does_not_name_it(transit, bootstrap,
                                                                       infra):
    contract = f"{random.randrange(10**7, 10**8)}"
    key = infra["AUTH_PRIVATE_KEY"]
    stranger, _ = generate_keypair()
    async with Requester(bootstrap) as app:
        meant = await app.send(GetRides(contract=contract), contract,
                               token=parent_token(key, contract))
        elsewhere = await app.send(GetRides(contract=contract), contract,
                                   token=parent_token(key, contract, audience=["auth", "wallet"]))
        unknown = await app.send(GetRides(contract=contract), contract,
                                 token=parent_token(stranger, contract))
    assert meant.json()["rides"] == []
    assert elsewhere.json()["error"]["code"] == "wrong_audience"
    assert unknown.json()["error"]["code"] == "unknown_key"
