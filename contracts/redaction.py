"""Which contract fields are secret, and copies of payloads with those fields masked.

A field is secret when its type is one of the secret types of ``contracts.types`` (``Secret``,
``ShortSecret``, ``LongSecret``: a ``SecretStr`` marked ``x-secret`` in the JSON Schema and the
AsyncAPI document): passwords, one-time and authenticator codes, activation codes, the TOTP
secret, access and refresh tokens, push tokens. This module is the one place that finds them,
for the dead-letter copies (services.runtime.consumer), the operator CLI (services.cli.render)
and the log redaction (services.runtime.logs). Pure functions, no I/O.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from contracts import catalog  # noqa: F401  (imports every contract module: a full registry)
from contracts.envelope import registered_types

MASK = "***"

_SECRET = "secret"
Nested = tuple[str, type[BaseModel]]
"""A field holding a model with secrets: ``("one" | "list" | "dict", model)``."""
Plan = Mapping[str, "str | Nested"]
"""Per JSON key of a model: ``"secret"``, or the nested model whose own plan applies (to the
object, to each element of a list, to each value of a dict)."""


def _holds(annotation: Any, kind: str = "one") -> tuple[bool, Nested | None]:
    """Whether a field's type is secret, and the nested model with secrets it holds, if any."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _holds(get_args(annotation)[0], kind)
    if origin in (Union, types.UnionType):
        found = [_holds(a, kind) for a in get_args(annotation)]
    elif origin in (list, tuple, set, frozenset):
        found = [_holds(a, "list") for a in get_args(annotation) if a is not Ellipsis]
    elif origin is dict:
        found = [_holds(get_args(annotation)[1], "dict")]
    elif annotation is SecretStr:
        return True, None
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) \
            and secret_plan(annotation):
        return False, (kind, annotation)
    else:
        return False, None
    return any(s for s, _ in found), next((n for _, n in found if n is not None), None)


@cache
def secret_plan(model: type[BaseModel]) -> Plan:
    """The secret fields of ``model`` by JSON key, and the fields holding models with some."""
    plan: dict[str, str | Nested] = {}
    for name, field in model.model_fields.items():
        secret, nested = _holds(field.annotation)
        key = field.alias or name
        if secret:
            plan[key] = _SECRET
        elif nested is not None:
            plan[key] = nested
    return plan


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The JSON keys of ``model`` (top level) whose values are secret."""
    return frozenset(k for k, v in secret_plan(model).items() if v == _SECRET)


@cache
def secret_field_names() -> frozenset[str]:
    """Every name a secret field has in any contract (top level or nested)."""
    names: set[str] = set()
    pending: list[type[BaseModel]] = list(registered_types().values())
    seen: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for key, spec in secret_plan(model).items():
            if spec == _SECRET:
                names.add(key)
            elif isinstance(spec, tuple):
                pending.append(spec[1])
    return frozenset(names)


def mask(model: type[BaseModel], data: Any) -> tuple[Any, tuple[str, ...]]:
    """A copy of the JSON data ``data`` of a ``model`` with every non-null secret replaced by
    ``MASK``, and the dotted paths masked (``password``, ``lines.0.code``). Data of another
    shape than the model's is left as it is: only what the model names is touched."""
    masked: list[str] = []
    return _mask(secret_plan(model), data, "", masked), tuple(masked)


def _mask(plan: Plan, data: Any, prefix: str, masked: list[str]) -> Any:
    if not plan or not isinstance(data, dict):
        return data
    out = dict(data)
    for key, spec in plan.items():
        value = out.get(key)
        if value is None:
            continue
        path = f"{prefix}{key}"
        if spec == _SECRET:
            out[key] = MASK
            masked.append(path)
        elif isinstance(spec, tuple):
            kind, inner = spec
            sub = secret_plan(inner)
            if kind == "list" and isinstance(value, list):
                out[key] = [_mask(sub, v, f"{path}.{i}.", masked) for i, v in enumerate(value)]
            elif kind == "dict" and isinstance(value, dict):
                out[key] = {k: _mask(sub, v, f"{path}.{k}.", masked) for k, v in value.items()}
            else:
                out[key] = _mask(sub, value, f"{path}.", masked)
    return out


def mask_by_name(data: Any) -> tuple[Any, tuple[str, ...]]:
    """For a payload of no known type: mask the top-level keys that name a secret field of
    any contract (a message sent under a wrong ``ce_type`` may still carry a password)."""
    if not isinstance(data, dict):
        return data, ()
    names = secret_field_names()
    hits = tuple(k for k, v in data.items() if k in names and v is not None)
    return ({k: (MASK if k in hits else v) for k, v in data.items()}, hits) if hits \
        else (data, ())


def mask_payload(type_name: str | None, value: bytes | None) -> tuple[bytes | None,
                                                                      tuple[str, ...]]:
    """The record value ``value`` with its secrets masked, and the paths masked.

    A JSON object is masked by the model ``type_name`` names (the ``ce_type`` header), or by
    secret field names when it names none. The original bytes come back unchanged when
    nothing was masked, and when the value is not JSON at all (then it is no contract
    message: there are no fields to find)."""
    if not value:
        return value, ()
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return value, ()
    model = registered_types().get(type_name or "")
    masked, paths = mask(model, data) if model is not None else mask_by_name(data)
    if not paths:
        return value, ()
    return json.dumps(masked, ensure_ascii=False, separators=(",", ":")).encode(), paths


def masked_dump(message: BaseModel) -> dict[str, Any]:
    """``message`` as JSON data (what it puts on the wire) with its secrets masked."""
    data, _ = mask(type(message), message.model_dump(mode="json", by_alias=True))
    return dict(data)
