"""Money on the wire and in text: integer kopecks, RUB only, never a float.

Every amount in every contract is a plain ``int`` of kopecks (1 ₽ = 100 kopecks), strictly:
a string, a float (even ``100.0``) or a boolean is a schema violation, never coerced. This module
holds the few operations that are easy to get wrong: percentages with explicit rounding, and the
Russian display format ``1 234,50 ₽`` that parents read.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, Strict

KOPECKS_PER_RUBLE = 100
MAX_AMOUNT = 100_000_000_00  # 100 million roubles: anything above is an integrator error

Kopecks = Annotated[
    int,
    Strict(),  # a JSON integer only: "100", 100.0 and true are refused, never coerced
    Field(
        ge=0,
        le=MAX_AMOUNT,
        description="Amount in integer kopecks (1 RUB = 100 kopecks); never negative.",
        examples=[12_550],
    ),
]
PositiveKopecks = Annotated[
    int,
    Strict(),  # a JSON integer only: "100", 100.0 and true are refused, never coerced
    Field(
        gt=0,
        le=MAX_AMOUNT,
        description="Strictly positive amount in integer kopecks (1 RUB = 100 kopecks).",
        examples=[50_000],
    ),
]
SignedKopecks = Annotated[
    int,
    Strict(),  # a JSON integer only: "100", 100.0 and true are refused, never coerced
    Field(
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        description="Signed amount in integer kopecks; negative only where a bounded debt "
        "is allowed (the grace meal).",
        examples=[-8_500],
    ),
]

NBSP = "\u00a0"  # between thousands groups and before the currency sign, so lines never break


def percent_of(amount: int, basis_points: int) -> int:
    """Return ``amount * basis_points / 10_000`` rounded down to whole kopecks.

    Used for bonus accrual (100 bp = 1 %); rounding down never gives away a kopeck that was
    not earned, and the result never exceeds the amount.
    """
    if amount < 0 or basis_points < 0:
        raise ValueError("amount and basis points must be non-negative")
    return amount * basis_points // 10_000


def format_rub(kopecks: int, *, locale: str = "ru") -> str:
    """Format kopecks for people: ``123450`` -> ``1 234,50 ₽`` (ru) or ``RUB 1,234.50`` (en)."""
    sign = "-" if kopecks < 0 else ""
    rubles, kop = divmod(abs(kopecks), KOPECKS_PER_RUBLE)
    if locale == "en":
        return f"{sign}RUB{NBSP}{rubles:,}.{kop:02d}"
    grouped = f"{rubles:,}".replace(",", NBSP)
    return f"{sign}{grouped},{kop:02d}{NBSP}₽"


def parse_rub(text: str) -> int:
    """Parse a rouble amount typed by a person ("1234.5", "1 234,50") into kopecks, exactly."""
    cleaned = text.replace(NBSP, "").replace(" ", "").replace("₽", "").replace(",", ".")
    if cleaned.count(".") > 1 or not cleaned.replace(".", "").isdigit():
        raise ValueError(f"not an amount of roubles: {text!r}")
    whole, _, frac = cleaned.partition(".")
    if len(frac) > 2:
        raise ValueError(f"more than two digits of kopecks: {text!r}")
    return int(whole or "0") * KOPECKS_PER_RUBLE + int(frac.ljust(2, "0"))
