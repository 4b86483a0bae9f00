"""The message envelope and the base classes of every contract.

A message on any SchoolCard topic is a JSON payload (one of the models below) plus an envelope
carried in Kafka headers, following CloudEvents 1.0 *binary mode* for Kafka: every attribute is a
``ce_``-prefixed header, the payload is the record value. Extension attributes carry what
CloudEvents lacks: schema version, correlation and causation ids, the reply topic for requests.
The W3C ``traceparent`` header carries the trace: the sending service stores the context a
message was emitted in with its outbox record, and its publish span, a child of that context,
is what the header names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.types import Identifier, UtcDatetime

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

HEADER_ID = "ce_id"
HEADER_TYPE = "ce_type"
HEADER_SOURCE = "ce_source"
HEADER_TIME = "ce_time"
HEADER_SUBJECT = "ce_subject"
HEADER_SPEC = "ce_specversion"
HEADER_SCHEMA_VERSION = "ce_schemaversion"
HEADER_CORRELATION = "ce_correlationid"
HEADER_CAUSATION = "ce_causationid"
HEADER_REPLY_TO = "ce_replyto"
HEADER_TRACEPARENT = "traceparent"
HEADER_CONTENT_TYPE = "content-type"
HEADER_AUTHORIZATION = "authorization"
"""Bearer access token on commands and queries from apps; never logged."""

_REGISTRY: dict[str, type[ContractModel]] = {}

ERROR_MESSAGE_MAX = 2000
"""Longest ErrorInfo message; a longer explanation is cut to it (Transaction.fail)."""


class ContractError(ValueError):
    """A message that cannot be understood: the reason goes to the dead-letter record."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class ContractModel(BaseModel):
    """Base of every payload: frozen, unknown fields ignored (additive evolution), documented.

    Subclasses get a CloudEvents type ``schoolcard.<owner>.<ClassName>`` where the owner is the
    contracts module that defines them (auth, wallet, ...).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KIND: ClassVar[str] = "message"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in {"Event", "Command", "Query", "Reply"} and cls.__module__ == __name__:
            return
        owner = cls.__module__.rsplit(".", 1)[-1]
        cls.TYPE = f"schoolcard.{owner}.{cls.__name__}"
        _REGISTRY[cls.TYPE] = cls


class Event(ContractModel):
    """Something that happened; past-tense name; never rejected by its consumers' rules."""

    KIND: ClassVar[str] = "event"


class Command(ContractModel):
    """A request to change state; imperative name; answered on the reply topic when the
    envelope names one."""

    KIND: ClassVar[str] = "command"
    PRIVATE_REPLY: ClassVar[bool] = False
    """Its answer carries session secrets: the request must name the requester's own reply
    topic (``apps.replies.<client-id>.v1``), never the shared ``apps.replies.v1``."""


class Query(ContractModel):
    """A read-only request answered on the reply topic named by the envelope."""

    KIND: ClassVar[str] = "query"


class Part(BaseModel):
    """A nested part of a contract (a sale line, a statement line); not a message by itself."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ErrorInfo(Part):

    code: str = Field(max_length=64, description="Machine-readable error code (snake_case); stable "
                      "per version.", examples=["insufficient_funds"])
    message: str = Field(max_length=ERROR_MESSAGE_MAX, description="Human-readable explanation in "
                         "English, no personal data.",
                         examples=["The canteen balance is too low for this sale."])


class Reply(ContractModel):
    """The answer to a command or query. ``ok`` is false exactly when ``error`` is set."""

    KIND: ClassVar[str] = "reply"
    PRIVATE: ClassVar[bool] = False
    """Carries session secrets (tokens, a TOTP secret): never published to the shared reply
    topic, whatever the request named (an ErrorReply ``private_reply_topic_required`` goes
    there instead)."""

    ok: bool = Field(default=True, description="True when the request succeeded.")
    error: ErrorInfo | None = Field(default=None, description="Why the request failed.")


class ErrorReply(Reply):
    """The reply to any request that failed before a specific reply could be built
    (invalid payload, unauthorised, unknown type)."""

    ok: bool = Field(default=False, description="Always false.")


class CommandAccepted(Reply):
    """The reply of any service to a command it applied, or had applied before (every command
    is idempotent on its ``request_id``)."""

    request_id: Identifier


def registered_types() -> Mapping[str, type[ContractModel]]:
    return dict(_REGISTRY)


def model_for(type_name: str) -> type[ContractModel]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise ContractError("unknown_type", f"no contract named {type_name!r}") from None


class Envelope(BaseModel):
    """Metadata of one message, carried as Kafka headers (CloudEvents binary mode)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(max_length=128, description="Unique message id (UUID); the idempotency key of "
                    "delivery.", examples=["6f1c2a3e-0d6b-4b8e-9f43-2b1d8f7a9c10"])
    type: str = Field(max_length=128, description="Contract type, e.g. "
                      "schoolcard.wallet.TopUpApplied.",
                      examples=["schoolcard.wallet.TopUpApplied"])
    schema_version: int = Field(default=1, ge=1, description="Major schema version of the type.")
    time: UtcDatetime = Field(description="When the fact happened / the request was made (UTC).")
    source: str = Field(max_length=128, description="Producing service or integrator, e.g. "
                        "'wallet', 'integrator:bank-izh'.", examples=["wallet"])
    subject: str | None = Field(default=None, max_length=256, description="The record key "
                                "(contract, card uid, gate, terminal) for readers that only see "
                                "headers.")
    correlation_id: str = Field(max_length=128, description="Id shared by every message of one "
                                "business flow; replies carry the request's correlation id.")
    causation_id: str | None = Field(default=None, max_length=128, description="Id of the message "
                                     "that caused this one.")
    reply_to: str | None = Field(default=None, max_length=1024, description="Topic the requester "
                                 "listens on for the reply (commands and queries only): "
                                 "apps.replies.v1, or the requester's own "
                                 "apps.replies.<client-id>.v1 created beforehand. A request naming "
                                 "any other topic is not handled: it is dead-lettered "
                                 "reply_topic_not_allowed.")
    traceparent: str | None = Field(default=None, max_length=128,
                                    description="W3C trace context.")

    @classmethod
    def new(
        cls,
        message: ContractModel,
        *,
        source: str,
        subject: str | None = None,
        cause: Envelope | None = None,
        reply_to: str | None = None,
        time: datetime | None = None,
        message_id: str | None = None,
        traceparent: str | None = None,
    ) -> Envelope:
        """A fresh envelope; with ``cause`` the correlation id is inherited and the causation id
        points at the cause, so one flow can be followed across services (``traceparent``:
        the trace context it is emitted in)."""
        new_id = message_id or str(uuid.uuid4())
        return cls(
            id=new_id,
            type=message.TYPE,
            schema_version=message.VERSION,
            time=time or datetime.now(UTC),
            source=source,
            subject=subject,
            correlation_id=cause.correlation_id if cause else new_id,
            causation_id=cause.id if cause else None,
            reply_to=reply_to,
            traceparent=traceparent,
        )

    def to_headers(self) -> dict[str, str]:
        headers = {
            HEADER_SPEC: SPEC_VERSION,
            HEADER_ID: self.id,
            HEADER_TYPE: self.type,
            HEADER_SOURCE: self.source,
            HEADER_TIME: self.time.isoformat().replace("+00:00", "Z"),
            HEADER_SCHEMA_VERSION: str(self.schema_version),
            HEADER_CORRELATION: self.correlation_id,
            HEADER_CONTENT_TYPE: CONTENT_TYPE,
        }
        optional = {
            HEADER_SUBJECT: self.subject,
            HEADER_CAUSATION: self.causation_id,
            HEADER_REPLY_TO: self.reply_to,
            HEADER_TRACEPARENT: self.traceparent,
        }
        headers.update({k: v for k, v in optional.items() if v is not None})
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Envelope:
        missing = [h for h in (HEADER_ID, HEADER_TYPE, HEADER_SOURCE, HEADER_TIME)
                   if not headers.get(h)]
        if missing:
            raise ContractError("missing_headers",
                                "missing envelope headers: " + ", ".join(missing))
        try:
            return cls(
                id=headers[HEADER_ID],
                type=headers[HEADER_TYPE],
                schema_version=int(headers.get(HEADER_SCHEMA_VERSION) or 1),
                time=headers[HEADER_TIME],
                source=headers[HEADER_SOURCE],
                subject=headers.get(HEADER_SUBJECT),
                correlation_id=headers.get(HEADER_CORRELATION) or headers[HEADER_ID],
                causation_id=headers.get(HEADER_CAUSATION),
                reply_to=headers.get(HEADER_REPLY_TO),
                traceparent=headers.get(HEADER_TRACEPARENT),
            )
        except (ValidationError, ValueError) as exc:
            raise ContractError("invalid_headers", _short(exc)) from None


def headers_to_dict(
    raw: Iterable[tuple[str, bytes | str | None]] | Mapping[str, Any],
) -> dict[str, str]:
    """Kafka headers (a list of (name, bytes) pairs) as a dict of str; undecodable values are
    replaced so a broken header can still be reported."""
    items = raw.items() if isinstance(raw, Mapping) else raw
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(value, bytes):
            out[name] = value.decode("utf-8", errors="replace")
        elif value is not None:
            out[name] = str(value)
    return out


def encode(message: ContractModel) -> bytes:
    return message.model_dump_json(by_alias=True).encode()


def decode(envelope: Envelope, value: bytes | None,
           allowed: Iterable[str] | None = None) -> ContractModel:
    """Validate the payload against the model named by the envelope.

    Raises ContractError with a code the dead-letter record carries: ``unexpected_type`` (not
    allowed on this topic), ``not_json``, ``schema_violation``, ``unsupported_version``.
    """
    model = model_for(envelope.type)
    if allowed is not None and envelope.type not in set(allowed):
        raise ContractError("unexpected_type", f"{envelope.type} is not carried by this topic")
    if envelope.schema_version != model.VERSION:
        raise ContractError("unsupported_version",
                            f"{envelope.type} v{envelope.schema_version} (this reader knows "
                            f"v{model.VERSION})")
    if value is None:
        raise ContractError("not_json", "empty record value")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError("not_json", f"payload is not JSON: {exc}") from None
    except RecursionError:  # a JSON bomb of nested arrays or objects
        raise ContractError("not_json", "payload is not JSON this reader can take: nested "
                            "too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError("schema_violation", _short(exc)) from None


def _short(exc: Exception) -> str:
    """A validation error as one line without the input values (they may be personal data)."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
                 for e in exc.errors(include_input=False, include_url=False)]
        return "; ".join(parts)[:1000]
    return str(exc)[:1000]
