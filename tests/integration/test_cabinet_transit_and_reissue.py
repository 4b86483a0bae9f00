"""The parents' cabinet end to end, in process, against the real broker and the real
MongoDB-protocol server, with wallet and transit running side by side on one FakeClock:
transit payments switched off put the card on the validators' deny list with their reason and
refuse its taps, switched on lift it unless the card is still blocked; a new-card application
is done by itself when the issuer reissues the card.

Every test uses its own contracts and cards; the clock is moved forward between steps, so that
every deny-list entry carries its own time (and its own message id).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts import wallet as w
from contracts.catalog import DLQ_CODE
from contracts.integrations import CardReissued, ValidatorTapped
from contracts.types import GuardianRole
from services.runtime.service import Service
from tests.integration.test_wallet_flows import TZ, Card, World, new_card, new_contract
from tests.support import FakeClock, Integrator, Record, Requester, TopicReader, eventually, uid

pytestmark = pytest.mark.integration

OPERATOR = "izhevsk-gortrans"
DENY_LIST = "transit.deny-list.v1"


class Cabinet:
    """wallet's World plus the transit service next to it and transit's topics."""

    def __init__(self, world: World, transit: Service, deny_list: TopicReader,
                 transit_dead: TopicReader) -> None:
        self.world, self.transit = world, transit
        self.deny_list, self.transit_dead = deny_list, transit_dead

    async def card(self) -> Card:
        """A card issued to both services (transit has projected it)."""
        card = await self.world.open_account()
        db = self.transit.runtime.db
        await eventually(lambda: db.transit_cards.find_one({"_id": card.card_uid}),
                         what="card projected by transit")
        return card

    async def switch(self, card: Card, enabled: bool) -> None:
        self.world.clock.advance(minutes=1)
        await self.world.accepted(w.SetServices(request_id=uid("req"), contract=card.contract,
                                                transit_payments=enabled), card.contract)

    async def entries(self, card: Card, count: int) -> list[dict[str, Any]]:
        """The card's deny-list entries (distinct message ids), oldest first."""
        return [r.json() for r in await distinct(self.deny_list,
                                                  lambda r: r.key == card.card_uid, count)]

    def tap(self, card: Card, at: datetime) -> ValidatorTapped:
        return ValidatorTapped(tap_id=uid("tap"), validator_id="val-29", vehicle_id="bus-29",
                               operator_id=OPERATOR, route="29", mode="bus",
                               stop_id="stop-central-square", card_uid=card.card_uid,
                               tapped_at=at)


async def distinct(reader: TopicReader, predicate: Callable[[Record], bool],
                   count: int) -> list[Record]:
    """At least ``count`` matching records with distinct message ids (delivery is at least
    once), in the order first read."""
    async def check() -> list[Record] | None:
        await reader.poll()
        found = {r.headers["ce_id"]: r for r in reader.records if predicate(r)}
        return list(found.values()) if len(found) >= count else None

    return await eventually(check, what=f"{count} distinct record(s) on {reader.topic}")


@pytest.fixture(scope="module")
async def cabinet(service_runner: Any, bootstrap: str,
                  infra: dict[str, str]) -> AsyncIterator[Cabinet]:
    clock = FakeClock(datetime(2026, 9, 1, 5, 0, tzinfo=UTC))  # 09:00 in Samara
    # outbox_takeover_s: see the world fixture of test_wallet_flows (nx-27017 and a fake clock)
    async with service_runner("wallet", clock=clock, outbox_takeover_s=1e9) as wallet, \
            service_runner("transit", clock=clock, outbox_takeover_s=1e9) as transit, \
            Integrator(bootstrap) as integrator, \
            Requester(bootstrap) as requester, \
            TopicReader(bootstrap, "wallet.events.v1") as events, \
            TopicReader(bootstrap, "wallet.sale-decisions.v1") as decisions, \
            TopicReader(bootstrap, "wallet.dead-letter.v1") as dead, \
            TopicReader(bootstrap, "wallet.auto-topup-requests.v1") as auto, \
            TopicReader(bootstrap, DENY_LIST) as deny_list, \
            TopicReader(bootstrap, "transit.dead-letter.v1") as transit_dead:
        world = World(wallet, clock, infra, integrator, requester, events, decisions, dead, auto)
        yield Cabinet(world, transit, deny_list, transit_dead)


async def test_transit_payments_switched_off_deny_the_card_at_the_validator_and_on_lift_it(
        cabinet: Cabinet) -> None:
    world = cabinet.world
    card = await cabinet.card()
    await world.top_up(card.contract, 100_00, "transit")
    await world.integrator.publish(
        cabinet.tap(card, world.clock.now - timedelta(minutes=30)), card.card_uid)
    await world.event("FareDebited", card.contract)  # the card rode: transit has its travel

    await cabinet.switch(card, False)
    [denied] = await cabinet.entries(card, 1)
    refused = cabinet.tap(card, world.clock.now)
    await world.integrator.publish(refused, card.card_uid)
    [dead] = await cabinet.transit_dead.wait_for(lambda r: r.key == card.card_uid)
    await cabinet.switch(card, True)
    entries = await cabinet.entries(card, 2)

    assert (denied["denied"], denied["blocked"], denied["reasons"]) == (
        True, False, ["transit_payments_off"])
    assert dead.headers[DLQ_CODE] == "transit_payments_off"
    assert dead.json()["tap_id"] == refused.tap_id
    assert (entries[-1]["denied"], entries[-1]["reasons"]) == (False, [])
    rides = await cabinet.transit.runtime.db.transit_rides.count_documents(
        {"contract": card.contract})
    assert rides == 1, "the refused tap was never priced"


async def test_a_blocked_card_switched_on_stays_denied_for_its_block(cabinet: Cabinet) -> None:
    world = cabinet.world
    card = await cabinet.card()  # never rode: its entries come without a travel
    world.clock.advance(minutes=1)
    await world.accepted(w.BlockCard(request_id=uid("req"), contract=card.contract),
                         card.contract, world.token(card.contract, GuardianRole.CO_GUARDIAN))
    [blocked] = await cabinet.entries(card, 1)
    await cabinet.switch(card, False)
    both = (await cabinet.entries(card, 2))[-1]
    await cabinet.switch(card, True)
    still = (await cabinet.entries(card, 3))[-1]

    assert (blocked["denied"], blocked["reasons"]) == (True, ["card_blocked"])
    assert (both["denied"], both["reasons"]) == (True, ["card_blocked", "transit_payments_off"])
    assert (still["denied"], still["blocked"], still["reasons"]) == (
        True, True, ["card_blocked"])


async def test_a_new_card_application_is_done_when_the_card_is_reissued(
        cabinet: Cabinet) -> None:
    world = cabinet.world
    card = await world.open_account()
    application = uid("app")
    await world.accepted(w.SubmitApplication(request_id=application, contract=card.contract,
                                             kind="new_card", reason="lost",
                                             comment="Потеряна в автобусе"), card.contract)
    new = Card(new_contract(), new_card(), card.school_id)
    world.clock.advance(minutes=1)
    await world.integrator.publish(CardReissued(
        old_contract=card.contract, new_contract=new.contract, new_card_uid=new.card_uid,
        school_id=card.school_id, school_tz=TZ, class_name="6А",
        reissued_at=world.clock.now), card.contract)  # signed as the issuer by Integrator
    done = await world.event("ApplicationStatusChanged", card.contract,
                             lambda r: r.json()["status"] == "done")
    reply = await world.command(w.GetApplications(contract=card.contract), card.contract,
                                world.token(card.contract))

    assert (done.json()["application_id"], done.json()["comment"]) == (
        application, "new card issued")
    [listed] = reply["applications"]
    assert (listed["application_id"], listed["status"], listed["staff_comment"]) == (
        application, "done", "new card issued")
    await world.event("AccountReissued", card.contract)  # the same transaction moved the money
