"""``CardTravel``: one card's rides with one operator, what was charged, and its deny-list state.

Late and out-of-order taps
--------------------------
Every ride keeps ``fare``, the net amount billed for it so far. Adding a tap reprices the tap's
whole week with :func:`price_taps` and compares each already charged ride with its new price:

* a ride whose price went down is *over-charged*, a ride whose price went up is *under-charged*
  (an inserted earlier tap can take a transfer away from a later ride, or free room under a cap);
* decreases are first offset against increases, in tap order: that moves money already collected
  from one ride to another and needs no money movement at all;
* every ride knows which debits carry its billed amount (``carriers``: its own debit, the debit
  of a later ride that absorbed an increase of it, or a share moved over by an offset), so a
  refund names the debit wallet took the money under (``charged_under``), newest share first;
* what is left of the decreases becomes refunds (``FareRefundIssued``), one per ride, with the
  deterministic correction id ``<ride_id>:corr:<tap_id that caused it>``; every refund goes to
  wallet, which pays it back or, for a fare it declined and has not collected yet, writes the
  owed fare down by it (transit's own copy of the debt shrinks the same way);
* what is left of the increases is *absorbed* by the new ride: its debit is its own fare plus
  those increases, listed per ride in ``FareAssessed.absorbed``. An already charged ride is
  never debited a second time; the only debit a tap ever causes is its own, once.

After every operation each ride's billed amount equals its current price, so once all taps of a
week have arrived, in any order, debits minus refunds equal the price of those taps in tap order.

Debt and the deny list
----------------------
Only a fare wallet declined for lack of money is debt (``OWED_DECLINES``): a card that was
blocked, closed or unknown to wallet owes nothing for the ride. The debt of a ride is its debit
less the refunds already issued on it, so a decline that arrives after a late tap lowered the
fare never recreates the part already written off. The card is denied while it owes anything,
while its contract blocked it (a lost card) or while the parent switched its transit payments
off; the reasons are kept apart, so that lifting one leaves the card denied for the others, and
it is allowed again when none holds. A block or a switch re-publishes the entry with the
reasons that remain (the compacted topic keeps only the latest entry per card).

Idempotency: every operation has a key (tap id, ride id of a debit outcome, settlement id); the
events it produced are stored with the aggregate, and a repeat with the same key and the same
parameters returns them again (deny-list entries excepted: they are state, see ``_replay``)
without changing anything. The same key with other parameters
raises :class:`TransitRejection` with a ``*_conflict`` reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from services.transit.domain.events import (
    CardAllowed,
    CardDenied,
    ConcessionExpiryReminded,
    FareAdjustment,
    FareAssessed,
    FareCorrected,
    FareRefundIssued,
    TransitEvent,
    event_from_doc,
    event_to_doc,
)
from services.transit.domain.pricing import (
    CapKind,
    ConcessionEligibility,
    Explanation,
    PricedRide,
    Tap,
    UnpriceableTap,
    as_utc,
    concession_reminder_due,
    price_taps,
)
from services.transit.domain.rules import FareRulebook

MAX_CLOCK_SKEW = timedelta(minutes=5)
KEPT_SETTLEMENT_KEYS = 32


class RejectionReason(StrEnum):
    CARD_MISMATCH = "card_mismatch"
    OPERATOR_MISMATCH = "operator_mismatch"
    TAP_ID_CONFLICT = "tap_id_conflict"
    TAP_IN_FUTURE = "tap_in_future"
    WEEK_CLOSED = "week_closed"
    NO_RULES_IN_FORCE = "no_rules_in_force"
    MODE_NOT_SERVED = "mode_not_served"
    NAIVE_CLOCK = "naive_clock"
    DEBIT_OUTCOME_CONFLICT = "debit_outcome_conflict"
    UNKNOWN_RIDE = "unknown_ride"


class TransitRejection(Exception):
    """An operation the domain refuses; ``reason`` is the machine-readable code."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


OWED_DECLINES = frozenset({"insufficient_funds"})
"""Wallet's decline reasons that make the fare debt (the next top-up pays it)."""


class DebitStatus(StrEnum):
    NONE = "none"  # nothing to debit (transfer, capped, free concession)
    PENDING = "pending"
    DEBITED = "debited"
    DECLINED = "declined"


@dataclass(frozen=True)
class Outcome:
    events: tuple[TransitEvent, ...]
    duplicate: bool = False


@dataclass
class RideRecord:
    """A ride as charged. ``fare``/``explanation``/``cap`` follow the latest pricing;
    ``first_*`` keep what the parent was first told, for the "corrected" statement line."""

    tap: Tap
    week: date
    local_day: date
    fare: int
    base_fare: int
    explanation: Explanation
    cap: CapKind | None
    rules_version: str
    first_fare: int
    first_explanation: Explanation
    debit_amount: int
    debit_status: DebitStatus
    refunded: int = 0  # refunds issued against this ride's debit (paid back or written off)
    # The debits that carry this ride's billed amount: [debit ride id, kopecks], oldest first.
    carriers: list[list[Any]] = field(default_factory=list)

    @property
    def ride_id(self) -> str:
        return self.tap.tap_id

    @property
    def corrected(self) -> bool:
        return self.fare != self.first_fare

    def to_doc(self) -> dict[str, Any]:
        return {
            "tap": self.tap.to_doc(),
            "week": self.week.isoformat(),
            "local_day": self.local_day.isoformat(),
            "fare": self.fare,
            "base_fare": self.base_fare,
            "explanation": self.explanation.value,
            "cap": None if self.cap is None else self.cap.value,
            "rules_version": self.rules_version,
            "first_fare": self.first_fare,
            "first_explanation": self.first_explanation.value,
            "debit_amount": self.debit_amount,
            "debit_status": self.debit_status.value,
            "refunded": self.refunded,
            "carriers": [{"ride_id": r, "amount": a} for r, a in self.carriers],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RideRecord:
        return cls(
            tap=Tap.from_doc(doc["tap"]),
            week=date.fromisoformat(doc["week"]),
            local_day=date.fromisoformat(doc["local_day"]),
            fare=doc["fare"],
            base_fare=doc["base_fare"],
            explanation=Explanation(doc["explanation"]),
            cap=None if doc["cap"] is None else CapKind(doc["cap"]),
            rules_version=doc["rules_version"],
            first_fare=doc["first_fare"],
            first_explanation=Explanation(doc["first_explanation"]),
            debit_amount=doc["debit_amount"],
            debit_status=DebitStatus(doc["debit_status"]),
            refunded=doc.get("refunded", 0),
            # older documents: the ride's own debit carried its fare
            carriers=[[c["ride_id"], c["amount"]] for c in doc.get(
                "carriers", [{"ride_id": doc["tap"]["tap_id"], "amount": doc["fare"]}]
                if doc["fare"] else [])],
        )


@dataclass
class CardTravel:
    """Aggregate of one card with one operator (id ``<operator_id>:<card_uid>``)."""

    card_uid: str
    operator_id: str
    version: int = 0
    concession: ConcessionEligibility | None = None
    concession_reminded_for: date | None = None
    denied: bool = False
    blocked: bool = False
    payments_off: bool = False
    rides: dict[str, RideRecord] = field(default_factory=dict)
    unpaid: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, tuple[TransitEvent, ...]] = field(default_factory=dict)
    debited_total: int = 0
    refunded_total: int = 0
    forgotten_fares: int = 0

    @property
    def aggregate_id(self) -> str:
        return f"{self.operator_id}:{self.card_uid}"

    @property
    def net_charged(self) -> int:
        """Kopecks ever debited minus ever refunded; always equals :attr:`priced_total`."""
        return self.debited_total - self.refunded_total

    @property
    def priced_total(self) -> int:
        """Current prices of the rides kept plus the final prices of rides already forgotten."""
        return sum(r.fare for r in self.rides.values()) + self.forgotten_fares

    @property
    def debt(self) -> int:
        return sum(self.unpaid.values())

    # ---- taps -----------------------------------------------------------------------------

    def record_tap(self, tap: Tap, rulebook: FareRulebook, now: datetime) -> Outcome:
        """Price a new tap, correct the rides of its week, and return the resulting events.

        Events come in this order: ``FareAssessed`` for the new ride, then ``FareCorrected``
        for each repriced ride and ``FareRefundIssued`` for each refund (both in tap order),
        then ``CardAllowed`` if refunds cancelled the whole debt. Rides of weeks closed for late
        uploads (``rulebook.late_upload_days`` after the week's end) are forgotten here.
        """
        now = self._check_clock(now)
        self._check_operator(rulebook)
        if tap.card_uid != self.card_uid:
            raise TransitRejection(RejectionReason.CARD_MISMATCH,
                                   f"tap is for card {tap.card_uid}, not {self.card_uid}")
        known = self.rides.get(tap.tap_id)
        if known is not None:
            if known.tap != tap:
                raise TransitRejection(RejectionReason.TAP_ID_CONFLICT,
                                       f"tap {tap.tap_id} was already recorded with other data")
            return self._replay(_tap_key(tap.tap_id))
        if tap.tapped_at > now + MAX_CLOCK_SKEW:
            raise TransitRejection(RejectionReason.TAP_IN_FUTURE,
                                   f"tap {tap.tap_id} is later than now ({now.isoformat()})")
        week = rulebook.week_of(tap.tapped_at)
        if self._week_closed(week, rulebook, now):
            raise TransitRejection(RejectionReason.WEEK_CLOSED,
                                   f"week of {week} no longer accepts late taps")

        week_rides = sorted((r for r in self.rides.values() if r.week == week),
                            key=lambda r: r.tap.order_key)
        try:
            priced = {p.tap.tap_id: p
                      for p in price_taps([*(r.tap for r in week_rides), tap], rulebook,
                                          self.concession)}
        except UnpriceableTap as exc:
            raise TransitRejection(RejectionReason(exc.code), str(exc)) from None

        corrections: list[FareCorrected] = []
        decreases: list[_Delta] = []
        increases: list[_Delta] = []
        for ride in week_rides:
            new = priced[ride.ride_id]
            if (new.fare, new.explanation, new.cap) == (ride.fare, ride.explanation, ride.cap):
                continue
            if new.fare != ride.fare:
                corrections.append(FareCorrected(
                    correction_id=_correction_id(ride.ride_id, tap.tap_id),
                    card_uid=self.card_uid,
                    ride_id=ride.ride_id,
                    old_fare=ride.fare,
                    new_fare=new.fare,
                    explanation=new.explanation,
                    cap=new.cap,
                    caused_by_tap_id=tap.tap_id,
                ))
                bucket = decreases if new.fare < ride.fare else increases
                bucket.append(_Delta(ride.ride_id, abs(new.fare - ride.fare)))
            ride.fare, ride.explanation, ride.cap = new.fare, new.explanation, new.cap
            ride.base_fare, ride.rules_version = new.base_fare, new.rules_version

        for source, target, amount in _offset(decreases, increases):
            self.rides[target].carriers.extend(_take(self.rides[source], amount))
        absorbed = tuple(FareAdjustment(d.ride_id, d.amount) for d in increases if d.amount)
        refunds = [refund for d in decreases if d.amount
                   for refund in self._refund(d.ride_id, d.amount, tap.tap_id)]

        new_ride = priced[tap.tap_id]
        debit_amount = new_ride.fare + sum(a.amount for a in absorbed)
        self.rides[tap.tap_id] = _record(new_ride, debit_amount)
        for a in absorbed:
            self.rides[a.ride_id].carriers.append([tap.tap_id, a.amount])
        self.debited_total += debit_amount
        assessed = FareAssessed(
            card_uid=self.card_uid,
            ride_id=tap.tap_id,
            tapped_at=tap.tapped_at,
            validator_id=tap.validator_id,
            vehicle_id=tap.vehicle_id,
            route=tap.route,
            stop=tap.stop,
            mode=tap.mode,
            fare=new_ride.fare,
            explanation=new_ride.explanation,
            cap=new_ride.cap,
            debit_amount=debit_amount,
            absorbed=absorbed,
            rules_version=new_ride.rules_version,
            offline=tap.offline,
            out_of_order=any(r.tap.order_key > tap.order_key for r in week_rides),
        )
        events: list[TransitEvent] = [assessed, *corrections, *refunds]
        events.extend(self._allow_if_settled(now))
        self._forget_closed_weeks(rulebook, now)
        return self._commit(_tap_key(tap.tap_id), events)

    def _refund(self, ride_id: str, amount: int, caused_by: str) -> list[FareRefundIssued]:
        """Refund ``amount`` of the ride, one refund per debit that carried it."""
        per_debit: dict[str, int] = {}
        for debit, share in _take(self.rides[ride_id], amount):
            per_debit[debit] = per_debit.get(debit, 0) + share
        refunds = []
        for debit, share in per_debit.items():
            if debit in self.rides:
                self.rides[debit].refunded += share
            against_debt = min(share, self.unpaid.get(debit, 0))
            if against_debt:
                self.unpaid[debit] -= against_debt
                if self.unpaid[debit] == 0:
                    del self.unpaid[debit]
            self.refunded_total += share
            refunds.append(FareRefundIssued(
                correction_id=_correction_id(ride_id, caused_by, debit),
                card_uid=self.card_uid,
                ride_id=ride_id,
                amount=share,
                against_debt=against_debt,
                caused_by_tap_id=caused_by,
                charged_under=debit,
            ))
        return refunds

    # ---- wallet outcomes and the deny list ------------------------------------------------

    def record_fare_debited(self, ride_id: str, amount: int, now: datetime) -> Outcome:
        """Wallet took the debit of ``ride_id``."""
        now = self._check_clock(now)
        key = f"debited:{ride_id}"
        ride = self._debited_ride(ride_id, amount)
        if key in self.outcomes:
            return self._replay(key)
        if ride is None:
            raise TransitRejection(RejectionReason.UNKNOWN_RIDE, f"no debit for ride {ride_id}")
        if ride.debit_status is DebitStatus.DECLINED:
            raise TransitRejection(RejectionReason.DEBIT_OUTCOME_CONFLICT,
                                   f"debit of ride {ride_id} was already declined")
        ride.debit_status = DebitStatus.DEBITED
        return self._commit(key, [])

    def record_fare_declined(self, ride_id: str, amount: int, now: datetime,
                             reason: str = "insufficient_funds") -> Outcome:
        """Wallet declined the debit of ``ride_id``. For lack of money (``OWED_DECLINES``) the
        fare less the refunds already issued on the ride becomes debt and the card is denied;
        any other reason (card blocked, account closed, unknown card) is no debt.

        The declined ``amount`` becomes debt even for a ride this aggregate has already
        forgotten, so that a very late decline still denies the card.
        """
        now = self._check_clock(now)
        key = f"declined:{ride_id}"
        ride = self._debited_ride(ride_id, amount)
        if key in self.outcomes:
            return self._replay(key)
        if ride is not None:
            if ride.debit_status is DebitStatus.DEBITED:
                raise TransitRejection(RejectionReason.DEBIT_OUTCOME_CONFLICT,
                                       f"debit of ride {ride_id} was already taken")
            ride.debit_status = DebitStatus.DECLINED
        owed = amount - (ride.refunded if ride is not None else 0)
        events: list[TransitEvent] = []
        if reason in OWED_DECLINES and owed > 0:
            self.unpaid[ride_id] = owed
            events.extend(self._deny(now))
        return self._commit(key, events)

    def _debited_ride(self, ride_id: str, amount: int) -> RideRecord | None:
        ride = self.rides.get(ride_id)
        if ride is not None and amount != ride.debit_amount:
            raise TransitRejection(RejectionReason.DEBIT_OUTCOME_CONFLICT,
                                   f"wallet reports {amount}, but ride {ride_id} debits "
                                   f"{ride.debit_amount}")
        return ride

    def record_debt_settled(self, settlement_id: str, now: datetime,
                            paid_rides: Iterable[str] = ()) -> Outcome:
        """Wallet reports that a top-up covered everything the card owed: lift the denial.
        ``paid_rides`` are the declined fares the top-up paid: their rides count as debited."""
        now = self._check_clock(now)
        key = f"settled:{settlement_id}"
        if key in self.outcomes:
            return self._replay(key)
        for ride_id in paid_rides:
            ride = self.rides.get(ride_id)
            if ride is not None and ride.debit_status is DebitStatus.DECLINED:
                ride.debit_status = DebitStatus.DEBITED
        self.unpaid.clear()
        return self._commit(key, self._allow_if_settled(now))

    def set_blocked(self, blocked: bool, now: datetime) -> Outcome:
        """The contract blocked (a lost card) or unblocked the card: deny it at once, or lift
        the denial if no other reason holds. Repeating the current state changes nothing."""
        now = self._check_clock(now)
        if blocked == self.blocked:
            return Outcome(())
        self.blocked = blocked
        self.version += 1
        return Outcome(tuple(self._restate(now)))

    def set_payments_off(self, off: bool, now: datetime) -> Outcome:
        """The parent switched the card's transit payments off (deny it at once, whatever it
        owes) or on (lift the denial unless it owes or is blocked). Repeating the current
        state changes nothing."""
        now = self._check_clock(now)
        if off == self.payments_off:
            return Outcome(())
        self.payments_off = off
        self.version += 1
        return Outcome(tuple(self._restate(now)))

    def _restate(self, now: datetime) -> list[TransitEvent]:
        """A reason was added or removed: publish the entry with the reasons that hold now,
        or lift it when none is left."""
        if self.unpaid or self.blocked or self.payments_off:
            self.denied = True
            return [self._denial(now)]
        return self._allow_if_settled(now)

    def _deny(self, now: datetime) -> list[TransitEvent]:
        if self.denied:
            return []
        self.denied = True
        return [self._denial(now)]

    def _denial(self, now: datetime) -> CardDenied:
        return CardDenied(self.card_uid, self.debt, tuple(sorted(self.unpaid)), now,
                          self.blocked, self.payments_off)

    def _allow_if_settled(self, now: datetime) -> list[TransitEvent]:
        if self.denied and not self.unpaid and not self.blocked and not self.payments_off:
            self.denied = False
            return [CardAllowed(self.card_uid, now)]
        return []

    # ---- concession -------------------------------------------------------------------

    def set_concession(self, eligibility: ConcessionEligibility | None) -> None:
        """Replace the card's concession. Rides already charged are not repriced now; a later
        tap of their week reprices them under the new eligibility like any late tap would."""
        if eligibility != self.concession:
            self.concession = eligibility
            self.version += 1

    def remind_concession_expiry(self, rulebook: FareRulebook, now: datetime) -> Outcome:
        """Emit the expiry reminder once per expiry date when it is due (see
        :func:`concession_reminder_due`); the day is the city's local day of ``now``."""
        now = self._check_clock(now)
        today = rulebook.local_day(now)
        if self.concession is None or not concession_reminder_due(
            self.concession, today, rulebook.concession_reminder_days,
            self.concession_reminded_for,
        ):
            return Outcome(())
        until = self.concession.valid_until
        self.concession_reminded_for = until
        self.version += 1
        return Outcome((ConcessionExpiryReminded(self.card_uid, until, (until - today).days,
                                                 now),))

    # ---- history ----------------------------------------------------------------------

    def rides_between(self, start: datetime, end: datetime) -> list[RideRecord]:
        """Rides with ``start <= tapped_at < end``, in tap order."""
        start, end = self._check_clock(start), self._check_clock(end)
        return sorted((r for r in self.rides.values() if start <= r.tap.tapped_at < end),
                      key=lambda r: r.tap.order_key)

    # ---- plumbing ---------------------------------------------------------------------

    def _check_operator(self, rulebook: FareRulebook) -> None:
        if rulebook.operator_id != self.operator_id:
            raise TransitRejection(RejectionReason.OPERATOR_MISMATCH,
                                   f"rules of {rulebook.operator_id}, card travel of "
                                   f"{self.operator_id}")

    @staticmethod
    def _check_clock(now: datetime) -> datetime:
        if now.tzinfo is None or now.utcoffset() is None:
            raise TransitRejection(RejectionReason.NAIVE_CLOCK, "times must be timezone-aware")
        return as_utc(now)

    @staticmethod
    def _week_closed(week: date, rulebook: FareRulebook, now: datetime) -> bool:
        return now > rulebook.week_end(week) + timedelta(days=rulebook.late_upload_days)

    def _forget_closed_weeks(self, rulebook: FareRulebook, now: datetime) -> None:
        """Drop rides of closed weeks (keeping the aggregate small) and their stored outcomes.
        Debts stay in ``unpaid`` until settled."""
        for ride_id, ride in list(self.rides.items()):
            if self._week_closed(ride.week, rulebook, now):
                del self.rides[ride_id]
                self.forgotten_fares += ride.fare
                for key in (_tap_key(ride_id), f"debited:{ride_id}", f"declined:{ride_id}"):
                    self.outcomes.pop(key, None)

    def _replay(self, key: str) -> Outcome:
        """A repeated operation: its events again (their ids are deterministic, so consumers
        drop the copies), but not its deny-list entries: those carry the card's state, and an
        old one published again would overwrite the current state on the compacted topic."""
        events = self.outcomes.get(key, ())
        return Outcome(tuple(e for e in events if not isinstance(e, CardDenied | CardAllowed)),
                       duplicate=True)

    def _commit(self, key: str, events: Sequence[TransitEvent]) -> Outcome:
        self.outcomes[key] = tuple(events)
        settlements = [k for k in self.outcomes if k.startswith("settled:")]
        for old in settlements[:-KEPT_SETTLEMENT_KEYS]:
            del self.outcomes[old]
        self.version += 1
        return Outcome(tuple(events))

    def to_doc(self) -> dict[str, Any]:
        """A BSON-friendly document (str, int, bool, None, UTC datetimes, lists, dicts)."""
        return {
            "card_uid": self.card_uid,
            "operator_id": self.operator_id,
            "version": self.version,
            "concession": None if self.concession is None else self.concession.to_doc(),
            "concession_reminded_for": (None if self.concession_reminded_for is None
                                        else self.concession_reminded_for.isoformat()),
            "denied": self.denied,
            "blocked": self.blocked,
            "payments_off": self.payments_off,
            "rides": [r.to_doc() for r in sorted(self.rides.values(),
                                                 key=lambda r: r.tap.order_key)],
            # ride ids may contain '.', which MongoDB field names must not: a list, not a map
            "unpaid": [{"ride_id": k, "amount": v} for k, v in self.unpaid.items()],
            "outcomes": [{"key": k, "events": [event_to_doc(e) for e in events]}
                         for k, events in self.outcomes.items()],
            "debited_total": self.debited_total,
            "refunded_total": self.refunded_total,
            "forgotten_fares": self.forgotten_fares,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CardTravel:
        concession = doc.get("concession")
        reminded = doc.get("concession_reminded_for")
        rides = [RideRecord.from_doc(r) for r in doc["rides"]]
        return cls(
            card_uid=doc["card_uid"],
            operator_id=doc["operator_id"],
            version=doc["version"],
            concession=None if concession is None else ConcessionEligibility.from_doc(concession),
            concession_reminded_for=None if reminded is None else date.fromisoformat(reminded),
            denied=doc["denied"],
            blocked=doc.get("blocked", False),
            payments_off=doc.get("payments_off", False),
            rides={r.ride_id: r for r in rides},
            unpaid={u["ride_id"]: u["amount"] for u in doc["unpaid"]},
            outcomes={o["key"]: tuple(event_from_doc(e) for e in o["events"])
                      for o in doc["outcomes"]},
            debited_total=doc["debited_total"],
            refunded_total=doc["refunded_total"],
            forgotten_fares=doc["forgotten_fares"],
        )


def untravelled_card_blocked(card_uid: str, blocked: bool, now: datetime, *,
                             payments_off: bool = False) -> tuple[TransitEvent, ...]:
    """The deny-list entry of a card blocked, unblocked or switched before it ever rode (it
    has no :class:`CardTravel` yet, so it owes nothing): denied while blocked or while its
    transit payments are off, with those reasons, allowed when neither holds."""
    now = CardTravel._check_clock(now)
    if blocked or payments_off:
        return (CardDenied(card_uid, 0, (), now, blocked=blocked, payments_off=payments_off),)
    return (CardAllowed(card_uid, now),)


def _tap_key(tap_id: str) -> str:
    return f"tap:{tap_id}"


def _correction_id(ride_id: str, caused_by_tap_id: str, debit: str | None = None) -> str:
    base = f"{ride_id}:corr:{caused_by_tap_id}"
    return base if debit in (None, ride_id) else f"{base}:via:{debit}"


def _take(ride: RideRecord, amount: int) -> list[list[Any]]:
    """Remove ``amount`` from the ride's carriers, newest share first, and return the shares
    taken; what the carriers do not cover (never, once every document has carriers) is
    counted under the ride's own debit."""
    taken: list[list[Any]] = []
    while amount and ride.carriers:
        debit, share = ride.carriers[-1]
        part = min(share, amount)
        taken.append([debit, part])
        amount -= part
        if part == share:
            ride.carriers.pop()
        else:
            ride.carriers[-1][1] = share - part
    if amount:
        taken.append([ride.ride_id, amount])
    return taken


@dataclass
class _Delta:
    ride_id: str
    amount: int


def _offset(decreases: list[_Delta], increases: list[_Delta]) -> list[tuple[str, str, int]]:
    """Cancel decreases against increases in tap order, in place (money moves between rides,
    not between the card and the operator); the moves as (from ride, to ride, kopecks)."""
    moves: list[tuple[str, str, int]] = []
    i = j = 0
    while i < len(decreases) and j < len(increases):
        moved = min(decreases[i].amount, increases[j].amount)
        if moved:
            moves.append((decreases[i].ride_id, increases[j].ride_id, moved))
        decreases[i].amount -= moved
        increases[j].amount -= moved
        if decreases[i].amount == 0:
            i += 1
        if increases[j].amount == 0:
            j += 1
    return moves


def _record(priced: PricedRide, debit_amount: int) -> RideRecord:
    own = [[priced.tap.tap_id, priced.fare]] if priced.fare else []
    return RideRecord(
        carriers=own,
        tap=priced.tap,
        week=priced.week,
        local_day=priced.local_day,
        fare=priced.fare,
        base_fare=priced.base_fare,
        explanation=priced.explanation,
        cap=priced.cap,
        rules_version=priced.rules_version,
        first_fare=priced.fare,
        first_explanation=priced.explanation,
        debit_amount=debit_amount,
        debit_status=DebitStatus.PENDING if debit_amount > 0 else DebitStatus.NONE,
    )
