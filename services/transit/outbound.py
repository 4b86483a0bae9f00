"""Domain events -> wire events: one small function per event, the only translation point.

Message ids are derived from the business key (uuid5), so re-emitting the recorded outcome of
a redelivered tap (or of the same tap under a new message id) yields the very same ids and
downstream inboxes drop the copies: wallet debits a ride once and refunds a correction once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from contracts import transit as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from services.transit import domain as d

NAMESPACE = uuid.UUID("8d7e1c52-6a0b-4c3f-b1e4-2f9a6d5c3b17")

Wired = tuple[str, str, ContractModel, str]
"""(topic, key, message, message id)."""


def message_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([kind, *map(str, parts)])))


def _wired(message: ContractModel, key: str, mid: str) -> Wired:
    return topic_for(type(message)).name, key, message, mid


def _ride_recorded(e: d.FareAssessed, contract: str) -> Wired:
    ride = wire.RideRecorded(
        ride_id=e.ride_id, contract=contract, card_uid=e.card_uid, route=e.route,
        mode=e.mode.value, stop_id=e.stop, tapped_at=e.tapped_at, fare=e.fare,
        explanation=e.explanation.value, offline=e.offline)
    return _wired(ride, contract, message_id("ride", e.ride_id))


def _fare_assessed(e: d.FareAssessed, contract: str) -> Wired:
    """What wallet debits under the ride id: the ride's fare plus increases of earlier rides
    of its week that this late tap caused (never a second debit of those rides)."""
    fare = wire.FareAssessed(ride_id=e.ride_id, contract=contract, card_uid=e.card_uid,
                             amount=e.debit_amount, tapped_at=e.tapped_at)
    return _wired(fare, contract, message_id("fare", e.ride_id))


def _fare_corrected(e: d.FareRefundIssued, contract: str, new_fare: int, at: Any) -> Wired:
    """The whole refund goes to wallet, also the part that cancels a debit wallet declined:
    only wallet knows whether the fare was paid (money back) or is still owed (written down),
    since its decline and this correction may cross on the way."""
    corrected = wire.FareCorrected(
        correction_id=e.correction_id, ride_id=e.ride_id, charged_under=e.charged_under,
        contract=contract, refund=e.amount,
        new_fare=new_fare, explanation=wire.FareExplanation.CORRECTED_LATE_UPLOAD,
        corrected_at=at)
    return _wired(corrected, contract, message_id("correction", e.correction_id))


def _deny_reasons(e: d.CardDenied) -> list[wire.DenyListReason]:
    held = ((e.debt > 0, wire.DenyListReason.DEBT),
            (e.blocked, wire.DenyListReason.CARD_BLOCKED),
            (e.payments_off, wire.DenyListReason.TRANSIT_PAYMENTS_OFF))
    return [reason for holds, reason in held if holds]


def _card_denied(e: d.CardDenied) -> Wired:
    reasons = _deny_reasons(e)
    entry = wire.DenyListEntry(card_uid=e.card_uid, denied=True, debt=e.debt,
                               blocked=e.blocked, reasons=reasons, updated_at=e.denied_at)
    return _wired(entry, e.card_uid,
                  message_id("deny", e.card_uid, e.denied_at.isoformat(), e.debt,
                             *[r.value for r in reasons]))


def _card_allowed(e: d.CardAllowed) -> Wired:
    entry = wire.DenyListEntry(card_uid=e.card_uid, denied=False, debt=0,
                               updated_at=e.allowed_at)
    return _wired(entry, e.card_uid, message_id("allow", e.card_uid, e.allowed_at.isoformat()))


def _concession_expiring(e: d.ConcessionExpiryReminded, contract: str) -> Wired:
    reminder = wire.ConcessionExpiring(contract=contract, valid_until=e.valid_until.isoformat(),
                                       days_left=e.days_left)
    return _wired(reminder, contract,
                  message_id("concession-expiring", contract, e.valid_until.isoformat()))


def to_wire(events: Iterable[d.TransitEvent], contract: str,
            at: Any) -> Iterator[Wired]:
    """The wire messages of one outcome, in the domain's order. ``contract`` is the card's
    contract; ``at`` the time a refund is stamped with (the outcome's transaction time)."""
    events = list(events)
    new_fares: Mapping[str, int] = {e.ride_id: e.new_fare for e in events
                                    if isinstance(e, d.FareCorrected)}
    for e in events:
        if isinstance(e, d.FareAssessed):
            yield _ride_recorded(e, contract)
            if e.debit_amount > 0:
                yield _fare_assessed(e, contract)
        elif isinstance(e, d.FareRefundIssued):
            yield _fare_corrected(e, contract, new_fares.get(e.ride_id, 0), at)
        elif isinstance(e, d.CardDenied):
            yield _card_denied(e)
        elif isinstance(e, d.CardAllowed):
            yield _card_allowed(e)
        elif isinstance(e, d.ConcessionExpiryReminded):
            yield _concession_expiring(e, contract)
        # d.FareCorrected alone (a repricing offset by another ride) moves no money: it only
        # updates the ride history read model.



def ride_line(line: d.RideLine) -> wire.RideLine:
    return wire.RideLine(ride_id=line.ride_id, tapped_at=line.tapped_at, route=line.route,
                         stop_id=line.stop, mode=line.mode.value, fare=line.fare,
                         explanation=line.explanation.value)
