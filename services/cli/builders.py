"""Command-line options -> contract models (pure; validation errors are pydantic's own)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from contracts.integrations import (
    CanteenSaleRequested,
    CardIssued,
    CardReissued,
    GateTapped,
    TopUpReceived,
    ValidatorTapped,
)
from contracts.money import parse_rub


class OptionError(ValueError):
    """An option value the CLI itself cannot parse (before the model is built)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def when(value: str | None) -> datetime | str:
    """``None``/``now`` -> the current UTC time; anything else goes to pydantic as given (so a
    naive time is rejected by the contract, not guessed)."""
    if value is None or value.strip().lower() == "now":
        return datetime.now(UTC)
    return value


def money(option: str, roubles: str | None, kopecks: int | None) -> int:
    """An amount given as roubles (``150``, ``1 234,50``) or as integer kopecks."""
    if roubles is not None and kopecks is not None:
        raise OptionError(option, "give the amount in roubles or in kopecks, not both")
    if kopecks is not None:
        return kopecks
    if roubles is None:
        raise OptionError(option, "an amount is required")
    try:
        return parse_rub(roubles)
    except ValueError as exc:
        raise OptionError(option, str(exc)) from None


def parse_item(spec: str) -> dict[str, Any]:
    """One sale line: a JSON object, or ``SKU:NAME:CATEGORY:QTY:PRICE_RUB[:ALLERGEN,...]``."""
    spec = spec.strip()
    if spec.startswith("{"):
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise OptionError("--item", f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise OptionError("--item", "a JSON item must be an object")
        return data
    parts = spec.split(":")
    if len(parts) not in (5, 6):
        raise OptionError("--item", f"expected SKU:NAME:CATEGORY:QTY:PRICE[:ALLERGENS], got "
                          f"{spec!r}")
    sku, name, category, qty, price = parts[:5]
    try:
        unit_price = parse_rub(price)
    except ValueError as exc:
        raise OptionError("--item", str(exc)) from None
    allergens = [a.strip().lower() for a in parts[5].split(",") if a.strip()] if len(parts) == 6 \
        else []
    return {"sku": sku, "name": name, "category": category, "qty": qty,
            "unit_price": unit_price, "allergens": allergens}


def key_of(message: ContractModel) -> str:
    """The record key the catalog prescribes for the message's topic (a field name such as
    ``contract`` or ``card_uid``); command topics describe theirs in prose ("contract or school
    id"), and every query the CLI sends is about one contract."""
    if isinstance(message, CardReissued):
        return message.old_contract  # after everything already said about the old card
    field = topic_for(type(message)).key
    if field not in type(message).model_fields:
        field = "contract"
    value = getattr(message, field, None)
    if not isinstance(value, str):
        raise KeyError(f"{type(message).__name__} has no key field {field!r}")
    return value


def top_up(*, contract: str, amount: int, payment_id: str | None, sub_balance: str,
           channel: str, receipt_email: str | None, paid_at: str | None,
           auto_top_up_request_id: str | None = None) -> TopUpReceived:
    return TopUpReceived.model_validate({
        "payment_id": payment_id or new_id("cli-pay"), "contract": contract, "amount": amount,
        "sub_balance": sub_balance, "channel": channel, "receipt_email": receipt_email,
        "auto_top_up_request_id": auto_top_up_request_id, "paid_at": when(paid_at)})


def card(*, contract: str, card_uid: str, school_id: str, school_tz: str, class_name: str,
         student_id: str | None, birth_date: str | None, birth_date_password: bool,
         issued_at: str | None, reissue_of: str | None = None) -> CardIssued | CardReissued:
    if reissue_of:
        return CardReissued.model_validate({
            "old_contract": reissue_of, "new_contract": contract, "new_card_uid": card_uid,
            "school_id": school_id, "school_tz": school_tz, "class_name": class_name,
            "reissued_at": when(issued_at)})
    if birth_date is None:
        raise OptionError("--birth-date", "required for a new card (YYYY-MM-DD)")
    return CardIssued.model_validate({
        "contract": contract, "card_uid": card_uid.upper(), "school_id": school_id,
        "school_tz": school_tz, "student_id": student_id or new_id("stu"),
        "class_name": class_name, "birth_date": birth_date,
        "initial_password_is_birth_date": birth_date_password, "issued_at": when(issued_at)})


def sale(*, card_uid: str, school_id: str, terminal_id: str, items: list[str],
         sale_id: str | None, bonus: int, sold_at: str | None) -> CanteenSaleRequested:
    if not items:
        raise OptionError("--item", "at least one --item is required")
    return CanteenSaleRequested.model_validate({
        "sale_id": sale_id or new_id("cli-sale"), "terminal_id": terminal_id,
        "school_id": school_id, "card_uid": card_uid.upper(),
        "items": [parse_item(i) for i in items], "bonus_to_redeem": bonus,
        "sold_at": when(sold_at)})


def gate_tap(*, card_uid: str, school_id: str, gate_id: str, direction: str,
             tap_id: str | None, tapped_at: str | None) -> GateTapped:
    return GateTapped.model_validate({
        "tap_id": tap_id or new_id("cli-gate"), "gate_id": gate_id, "school_id": school_id,
        "card_uid": card_uid.upper(), "direction": direction, "tapped_at": when(tapped_at)})


def validator_tap(*, card_uid: str, validator_id: str, vehicle_id: str, operator_id: str,
                  route: str, mode: str, stop_id: str, tap_id: str | None,
                  tapped_at: str | None, offline: bool) -> ValidatorTapped:
    return ValidatorTapped.model_validate({
        "tap_id": tap_id or new_id("cli-val"), "validator_id": validator_id,
        "vehicle_id": vehicle_id, "operator_id": operator_id, "route": route, "mode": mode,
        "stop_id": stop_id, "card_uid": card_uid.upper(), "tapped_at": when(tapped_at),
        "offline": offline})


def validation_lines(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, message) per error, without the input values (they may be personal data)."""
    return [(".".join(str(p) for p in e["loc"]) or "<root>", e["msg"])
            for e in exc.errors(include_input=False, include_url=False)]

