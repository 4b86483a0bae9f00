"""The double-entry ledger: immutable entries, balanced postings, and the balance check.

Every movement of money or points is an entry on one ledger account. A wallet leg sits on the
contract number with a sub-balance; a system leg sits on a named counter-account
(``external:topup``, ``revenue:canteen`` ...) with no sub-balance. The legs of one operation
always sum to zero, so money is never created or lost inside the platform.

Entry ids are ``<operation kind>:<operation id>:<leg>``: re-inserting the entries of a replayed
operation hits the same unique ids, and a payment id reused on another contract collides too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.wallet.domain._codec import load, to_plain
from services.wallet.domain.values import Balances, SubBalance


class CounterAccount(StrEnum):
    TOP_UP = "external:topup"
    REVENUE_CANTEEN = "revenue:canteen"
    REVENUE_TRANSIT = "revenue:transit"
    TRANSFER = "internal:transfer"
    REISSUE = "internal:reissue"
    BONUS_ACCRUAL = "bonus:accrual"
    BONUS_EXPIRY = "bonus:expiry"
    PAYOUT = "external:payout"


class OperationKind(StrEnum):
    TOP_UP = "top_up"
    SALE = "sale"
    SALE_REFUND = "sale_refund"
    FARE = "fare"
    FARE_REFUND = "fare_refund"
    TRANSFER = "transfer"
    BONUS_EXPIRY = "bonus_expiry"
    REISSUE_OUT = "reissue_out"
    REISSUE_IN = "reissue_in"
    PAYOUT = "payout"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    entry_id: str
    account: str  # a contract number, or a counter-account name for system legs
    sub_balance: SubBalance | None  # None on system legs
    amount: int  # signed kopecks (points on the bonus sub-balance)
    counter_account: str
    operation_kind: OperationKind
    operation_id: str
    at: datetime

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = to_plain(self)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LedgerEntry:
        return load(cls, doc)


Leg = tuple[SubBalance, int, CounterAccount]


def build_posting(
    contract: str,
    kind: OperationKind,
    operation_id: str,
    legs: Iterable[Leg],
    at: datetime,
) -> list[LedgerEntry]:
    """Turn wallet legs into a balanced posting by adding one system leg per counter-account.

    Zero legs are dropped, and so are system legs that net to zero (a transfer between two
    sub-balances of one account has only its two wallet legs).
    """
    entries: list[LedgerEntry] = []
    per_counter: dict[CounterAccount, int] = defaultdict(int)
    for sub, amount, counter in legs:
        if amount == 0:
            continue
        per_counter[counter] -= amount
        entries.append(
            LedgerEntry("", contract, sub, amount, counter.value, kind, operation_id, at)
        )
    for counter, amount in per_counter.items():
        if amount != 0:
            entries.append(
                LedgerEntry("", counter.value, None, amount, contract, kind, operation_id, at)
            )
    return [
        LedgerEntry(
            f"{kind.value}:{operation_id}:{n}",
            e.account,
            e.sub_balance,
            e.amount,
            e.counter_account,
            e.operation_kind,
            e.operation_id,
            e.at,
        )
        for n, e in enumerate(entries)
    ]


def ledger_balances(entries: Iterable[LedgerEntry], contract: str) -> Balances:
    """Sum one contract's wallet legs per sub-balance: what its balances must be."""
    sums: dict[SubBalance, int] = defaultdict(int)
    for entry in entries:
        if entry.account == contract and entry.sub_balance is not None:
            sums[entry.sub_balance] += entry.amount
    return Balances(
        general=sums[SubBalance.GENERAL],
        canteen=sums[SubBalance.CANTEEN],
        transit=sums[SubBalance.TRANSIT],
        bonus=sums[SubBalance.BONUS],
    )


def unbalanced_operations(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], int]:
    """Operations whose legs do not sum to zero, with their residue; empty when all is well."""
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for entry in entries:
        sums[(entry.operation_kind.value, entry.operation_id)] += entry.amount
    return {key: total for key, total in sums.items() if total != 0}
