"""The trust boundary of the wire vocabulary: every string of every contract is bounded, every
amount of money is a strict integer of kopecks, and the fields that hold secrets are known.

The walk is generic: it visits every model the contracts define (every message, every part,
the envelope) and every type inside a field (optional, list, tuple, dict keys and values,
nested models), so a field added tomorrow is checked without touching this file."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel, Field, SecretStr, Strict, StringConstraints, ValidationError
from pydantic.fields import FieldInfo

import contracts
from contracts.auth import Login
from contracts.envelope import ContractError, Envelope, decode, encode
from contracts.integrations import TopUpReceived
from contracts.money import Kopecks
from contracts.redaction import secret_field_names, secret_fields
from contracts.transit import RULES_MAX_CHARS, SetFareRules
from contracts.wallet import OpenDispute

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

FREE_JSON = {"SetFareRules.rules": "free JSON, bounded by its encoded size (RULES_MAX_CHARS)"}
"""Fields whose inside no type can bound, with what bounds them instead (tested below)."""

MONEY_NAME = re.compile(r"amount|total|paid|money|fare(?!s_)|refund(?!s$)|debt|balance|"
                        r"threshold|price|bonus|points|kopeck|^general$|^canteen$|^transit$")
"""Names of integer fields that hold money (``refunds`` counts refunds, it is no amount)."""


def contract_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in a module of the contracts package."""
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"contracts.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class Leaf:
    """A scalar somewhere inside a field: its path, type and the constraints on it."""

    path: str
    kind: type | Any
    metadata: tuple[Any, ...]
    description: str

    def max_length(self) -> int | None:
        bounds = [m.max_length for m in _flat(self.metadata)
                  if isinstance(m, annotated_types.MaxLen | StringConstraints)
                  and m.max_length is not None]
        return min(bounds) if bounds else None

    def strict(self) -> bool:
        return any(isinstance(m, Strict) and m.strict for m in _flat(self.metadata))

    def lower_bound(self) -> bool:
        return any(isinstance(m, annotated_types.Ge | annotated_types.Gt)
                   for m in _flat(self.metadata))


def _flat(metadata: tuple[Any, ...]) -> Iterator[Any]:
    for m in metadata:
        if isinstance(m, FieldInfo):
            yield from _flat(tuple(m.metadata))
        elif isinstance(m, annotated_types.GroupedMetadata) and not isinstance(
                m, StringConstraints):
            yield from _flat(tuple(m))
        else:
            yield m


def leaves(model: type[BaseModel], prefix: str = "",
           seen: frozenset[type] = frozenset()) -> Iterator[Leaf]:
    """Every scalar of ``model``'s fields, through containers and nested models. Constraints
    given to a field reach through Optional (as pydantic applies them), not into a list's or
    a dict's items (there ``max_length`` bounds the container)."""
    for name, field in model.model_fields.items():
        path = f"{prefix or model.__name__}.{name}"
        yield from _leaves(field.annotation, tuple(field.metadata), path,
                           field.description or "", seen | {model})


def _leaves(tp: Any, metadata: tuple[Any, ...], path: str, description: str,
            seen: frozenset[type]) -> Iterator[Leaf]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        for m in extra:
            if isinstance(m, FieldInfo) and m.description and not description:
                description = m.description
        yield from _leaves(base, (*metadata, *extra), path, description, seen)
    elif origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is not type(None):
                yield from _leaves(arg, metadata, path, description, seen)
    elif origin in (list, tuple, set, frozenset):
        for arg in get_args(tp):
            if arg is not Ellipsis:
                yield from _leaves(arg, (), f"{path}[]", description, seen)
    elif origin is dict:
        key, value = get_args(tp)
        yield from _leaves(key, (), f"{path}{{key}}", description, seen)
        yield from _leaves(value, (), f"{path}{{}}", description, seen)
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp not in seen:
            yield from leaves(tp, path, seen)
    else:
        yield Leaf(path, tp, metadata, description)


def problems(models: list[type[BaseModel]]) -> list[str]:
    """What breaks the rules: unbounded strings, money that is not a strict integer with a
    lower bound, free values (Any) nobody bounds."""
    found = []
    for model in models:
        for leaf in leaves(model):
            if re.sub(r"[\[{].*$", "", leaf.path) in FREE_JSON:
                continue
            if leaf.kind in (str, SecretStr) and leaf.max_length() is None:
                found.append(f"{leaf.path}: a string without max_length")
            elif leaf.kind is Any:
                found.append(f"{leaf.path}: a free value no type bounds")
            elif leaf.kind is int and _is_money(leaf) and not (leaf.strict()
                                                                and leaf.lower_bound()):
                found.append(f"{leaf.path}: money that is not a strict, bounded integer "
                             "(use contracts.money.Kopecks)")
    return found


def _is_money(leaf: Leaf) -> bool:
    name = leaf.path.rsplit(".", 1)[-1].rstrip("[]")
    return bool(MONEY_NAME.search(name)) or "kopeck" in leaf.description.lower()


MODELS = contract_models()


def test_the_walk_sees_every_message_part_and_the_envelope():
    names = {m.__name__ for m in MODELS}
    assert {"TopUpReceived", "SaleItem", "Balances", "AccessTokenClaims", "ErrorInfo",
            "Envelope", "SalesReportLine", "StatementLine"} <= names
    assert len(MODELS) > 100


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_every_string_is_bounded_and_every_amount_is_a_strict_integer_of_kopecks(model):
    assert problems([model]) == []


def test_the_walk_finds_an_unbounded_string_or_a_lax_amount_however_deep_it_is():
    class Line(BaseModel):
        note: str | None = None
        unit_price: int = Field(ge=0)

    class Careless(BaseModel):
        comment: str
        tags: list[Annotated[str, StringConstraints(pattern=r"^\w+$")]]
        by_kind: dict[str, Kopecks]
        lines: list[Line]
        settled: int = Field(ge=0, description="What was paid back, kopecks.")
        extra: dict[str, Any]

    assert sorted(problems([Careless])) == sorted([
        "Careless.comment: a string without max_length",
        "Careless.tags[]: a string without max_length",
        "Careless.by_kind{key}: a string without max_length",
        "Careless.lines[].note: a string without max_length",
        "Careless.lines[].unit_price: money that is not a strict, bounded integer "
        "(use contracts.money.Kopecks)",
        "Careless.settled: money that is not a strict, bounded integer "
        "(use contracts.money.Kopecks)",
        "Careless.extra{key}: a string without max_length",
        "Careless.extra{}: a free value no type bounds",
    ])


_TOP_UP = {"payment_id": "p-1", "contract": "40012345", "channel": "atm",
           "paid_at": "2026-09-01T05:00:00Z"}


@pytest.mark.parametrize("amount", ["100", True, 100.0, "1e2", None])
def test_a_top_up_whose_amount_is_no_json_integer_is_refused(amount):
    with pytest.raises(ValidationError):
        TopUpReceived.model_validate_json(json.dumps({**_TOP_UP, "amount": amount}))
    with pytest.raises(ValidationError):
        TopUpReceived.model_validate({**_TOP_UP, "amount": amount})
    envelope = Envelope.new(TopUpReceived.model_construct(), source="integrator:bank")
    with pytest.raises(ContractError) as refused:
        decode(envelope, json.dumps({**_TOP_UP, "amount": amount}).encode())
    assert refused.value.code == "schema_violation"


def test_a_top_up_of_a_json_integer_is_taken():
    top_up = TopUpReceived.model_validate_json(json.dumps({**_TOP_UP, "amount": 100}))
    assert top_up.amount == 100 and type(top_up.amount) is int


def test_a_ten_megabyte_comment_is_refused_at_the_door():
    dispute = {"request_id": "r-1", "contract": "40012345", "operation_id": "till-7-1",
               "comment": "Булочку не выдали. "}
    assert OpenDispute.model_validate(dispute).comment
    huge = {**dispute, "comment": "я" * 10_000_000}
    with pytest.raises(ValidationError, match="at most 500 characters"):
        OpenDispute.model_validate(huge)
    envelope = Envelope.new(OpenDispute.model_construct(), source="app:test")
    with pytest.raises(ContractError) as refused:
        decode(envelope, json.dumps(huge, ensure_ascii=False).encode())
    assert refused.value.code == "schema_violation"
    assert "я" * 20 not in refused.value.reason


def test_a_password_too_long_for_auth_still_reaches_auth_but_a_megabyte_does_not():
    # 129-1024 characters: auth answers password_too_long; beyond, the record is refused.
    assert Login(request_id="r1", login="+79121234567", password="x" * 1024)
    with pytest.raises(ValidationError):
        Login(request_id="r1", login="+79121234567", password="x" * 1_000_000)


def test_a_huge_envelope_header_is_an_invalid_header_not_a_stored_id():
    headers = Envelope.new(OpenDispute.model_construct(), source="app:test").to_headers()
    with pytest.raises(ContractError) as refused:
        Envelope.from_headers({**headers, "ce_id": "x" * 100_000})
    assert refused.value.code == "invalid_headers"


def test_fare_rules_are_bounded_by_their_encoded_size():
    shipped = json.loads((ROOT / "services" / "transit" / "fare_rules.json").read_text())
    command = {"request_id": "r-1", "operator_id": "izhevsk", "version": 2}
    assert SetFareRules.model_validate({**command, "rules": shipped}).rules == shipped
    with pytest.raises(ValidationError, match=f"exceeds {RULES_MAX_CHARS} characters"):
        SetFareRules.model_validate({**command, "rules": {"note": "x" * RULES_MAX_CHARS}})


def test_the_secret_fields_are_the_passwords_codes_and_tokens():
    from contracts import auth, notify

    assert secret_field_names() == {
        "password", "new_password", "current_password", "code", "totp", "activation_code",
        "refresh_token", "access_token", "secret", "otpauth_uri", "token", "code_word",
        "device_token"}
    assert secret_fields(auth.Login) == {"password", "totp", "device_token"}
    assert secret_fields(auth.SessionTokens) == {"access_token", "refresh_token",
                                                 "device_token"}
    assert secret_fields(notify.OneTimeCodeRequested) == {"code"}
    assert secret_fields(notify.RegisterPushToken) == {"token"}
    assert secret_fields(auth.GuardianContacts) == frozenset()


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_every_secret_field_is_marked_in_the_json_schema(model):
    schema = json.dumps(model.model_json_schema())
    assert schema.count('"x-secret": true') >= len(secret_fields(model))
    secret_json = [k for k, v in model.model_json_schema().get("properties", {}).items()
                   if "x-secret" in json.dumps(v)]
    assert set(secret_json) == set(secret_fields(model))


def test_a_secret_travels_in_the_payload_and_nowhere_else():
    login = Login(request_id="r1", login="+79121234567", password="blue-river-42",
                  totp="492039")
    assert json.loads(encode(login))["password"] == "blue-river-42"
    assert "blue-river-42" not in repr(login) and "492039" not in str(login)
    assert "blue-river-42" not in json.dumps(
        Envelope.new(login, source="app:test").to_headers())
