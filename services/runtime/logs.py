"""Structured logs (structlog): JSON lines carrying service, event id and correlation id, and
``trace_id`` / ``span_id`` (hex, as tracing back ends show them) for a line written inside a
span — a handler's, a publish's — so a log line leads to its trace.

Secrets never reach a log line: values under the name of a secret contract field
(contracts.redaction: password, code, totp, refresh_token, activation_code, ...) or another
secret-like key are replaced, pydantic ``SecretStr`` renders masked, and anything that looks
like a one-time code or a bearer token inside free text is masked as a last line of defence.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from contracts.redaction import MASK, secret_field_names

SECRET_KEYS = re.compile(
    r"^(code|otp|otp_code|one_time_code|totp)$|pass(word)?|secret|token|authorization|pepper"
    r"|private", re.IGNORECASE)
"""Keys that are no contract field but hold secrets all the same (settings, headers), and
the shapes of secret field names a contract may add."""
_SECRET_TEXT = re.compile(
    r"(?<![\w.:/-])\d{6}(?![\w-]|[.:]\d)|Bearer\s+[A-Za-z0-9._\-]+|eyJ[A-Za-z0-9._\-]{20,}")


def is_secret_key(key: str) -> bool:
    return key in secret_field_names() or SECRET_KEYS.search(key) is not None


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_TEXT.sub(MASK, value)
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(
    _: Any, __: str, event_dict: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in {"event", "timestamp", "level", "logger"}:
            if key == "event":
                event_dict[key] = redact(event_dict[key])
            continue
        event_dict[key] = MASK if is_secret_key(key) else redact(event_dict[key])
    return event_dict


def add_trace_ids(
    _: Any, __: str, event_dict: MutableMapping[str, Any],
) -> MutableMapping[str, Any]:
    """The current span's trace and span ids, when a span is current."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event_dict.setdefault("trace_id", format(span.trace_id, "032x"))
        event_dict.setdefault("span_id", format(span.span_id, "016x"))
    return event_dict


def configure_logging(service: str, *, level: str = "INFO", json: bool = True) -> None:
    """Route structlog and the standard library (FastStream, aiokafka, pymongo) through one
    redacting JSON renderer on stderr."""
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    _redact_processor, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel("WARNING")
    for own_handlers in ("faststream", "faststream.access", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(own_handlers)
        lg.handlers[:] = []
        lg.propagate = True
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str = "schoolcard") -> Any:
    return structlog.get_logger(name)
