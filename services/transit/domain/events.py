"""Domain events of transit (not wire contracts: handlers map each to its contract model).

Events round-trip through plain dicts (:func:`event_to_doc` / :func:`event_from_doc`) because
the aggregate stores the events each operation produced, so that a repeated operation returns
exactly the same result.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

from services.transit.domain.pricing import CapKind, Explanation, as_utc
from services.transit.domain.rules import Mode


@dataclass(frozen=True)
class FareAdjustment:
    """Part of a debit that pays for a price increase of another, already charged ride."""

    ride_id: str
    amount: int


@dataclass(frozen=True)
class FareAssessed:
    """A new ride was priced. ``debit_amount`` (kopecks, may be 0) is what wallet must debit
    under ``ride_id``: the ride's own ``fare`` plus ``absorbed`` increases of earlier rides."""

    card_uid: str
    ride_id: str
    tapped_at: datetime
    validator_id: str
    vehicle_id: str
    route: str
    stop: str
    mode: Mode
    fare: int
    explanation: Explanation
    cap: CapKind | None
    debit_amount: int
    absorbed: tuple[FareAdjustment, ...]
    rules_version: str
    offline: bool
    out_of_order: bool


@dataclass(frozen=True)
class FareCorrected:
    """An already charged ride was repriced because another tap of its week arrived late."""

    correction_id: str
    card_uid: str
    ride_id: str
    old_fare: int
    new_fare: int
    explanation: Explanation
    cap: CapKind | None
    caused_by_tap_id: str


@dataclass(frozen=True)
class FareRefundIssued:
    """Money owed back for an over-charged ride; ``correction_id`` is wallet's idempotency key.
    ``charged_under`` is the debit that carried the money (the ride's own, or a later ride's
    that absorbed an increase of this one). ``against_debt`` is the part that cancels a still
    unpaid (declined) debit: wallet writes its owed fare down by it, so the whole ``amount``
    still goes to wallet."""

    correction_id: str
    card_uid: str
    ride_id: str
    amount: int
    against_debt: int
    caused_by_tap_id: str
    charged_under: str = ""

    def __post_init__(self) -> None:
        if not self.charged_under:
            object.__setattr__(self, "charged_under", self.ride_id)


@dataclass(frozen=True)
class CardDenied:
    """Validators must refuse the card (deny-list entry, keyed by card): it owes fares, or
    its contract blocked it (``blocked``; a lost card), or the parent switched its transit
    payments off (``payments_off``), each reason kept apart; the entry names all of them."""

    card_uid: str
    debt: int
    unpaid_ride_ids: tuple[str, ...]
    denied_at: datetime
    blocked: bool = False
    payments_off: bool = False


@dataclass(frozen=True)
class CardAllowed:
    """Nothing is owed, the card is not blocked and pays fares: the deny-list entry is
    lifted."""

    card_uid: str
    allowed_at: datetime


@dataclass(frozen=True)
class ConcessionExpiryReminded:
    card_uid: str
    valid_until: date
    days_left: int
    reminded_at: datetime


TransitEvent = (
    FareAssessed
    | FareCorrected
    | FareRefundIssued
    | CardDenied
    | CardAllowed
    | ConcessionExpiryReminded
)

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        FareAssessed,
        FareCorrected,
        FareRefundIssued,
        CardDenied,
        CardAllowed,
        ConcessionExpiryReminded,
    )
}


def event_to_doc(event: TransitEvent) -> dict[str, Any]:
    doc = _encode_dataclass(event)
    doc["type"] = type(event).__name__
    return doc


def event_from_doc(doc: Mapping[str, Any]) -> TransitEvent:
    cls = _EVENT_TYPES[doc["type"]]
    event: TransitEvent = _decode(cls, {k: v for k, v in doc.items() if k != "type"})
    return event


def _encode_dataclass(value: Any) -> dict[str, Any]:
    return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode_dataclass(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return None if value is None else _decode(options[0], value)
    if origin is tuple:
        item_hint = get_args(hint)[0]
        return tuple(_decode(item_hint, item) for item in value)
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            hints = get_type_hints(hint)
            # a field added later is absent from older stored outcomes: its default applies
            return hint(**{f.name: _decode(hints[f.name], value[f.name])
                           for f in dataclasses.fields(hint) if f.name in value})
        if issubclass(hint, Enum):
            return hint(value)
        if hint is datetime:
            return as_utc(value)
        if hint is date:
            return date.fromisoformat(value)
    return value
