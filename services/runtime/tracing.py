"""Traces across services, through the outbox.

FastStream's telemetry middleware traces a publish under the current span, but a batch
subscriber's span is a new root (it only links the records' contexts), and the outbox relay
publishes from its own task, where no span is current: each hop would start a new trace. So:

- every message a handler runs for gets its own span (``traced``), whose parent is the
  ``traceparent`` the message arrived with — when spans are exported; when nothing exports
  (``SCHOOLCARD_OTEL_EXPORTER=none``) the message's own context is made current instead, with
  no span: an SDK span per message cost ~50 us of the hot path (attributes, ids, the
  processor chain) for nobody, and the trace still joins, as what is emitted carries the
  message's ``traceparent`` on;
- ``Transaction.emit`` stores the current span's ``traceparent`` in the outbox record's
  envelope (``current_traceparent``);
- the relay publishes each record with that context made current (``under``): FastStream's
  publish span is its child, and the ``traceparent`` it writes in the record's headers
  carries the trace on to the next service.

One trace thus runs gate -> access -> notify.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from contracts.envelope import HEADER_TRACEPARENT

if TYPE_CHECKING:  # the consumer's module needs the outbox's, which needs this one
    from services.runtime.consumer import Handler, Inbound, Routes

TRACER_NAME = "schoolcard"
_PROPAGATOR = TraceContextTextMapPropagator()


def tracer_provider(service: str, exporter: str, endpoint: str = "") -> TracerProvider:
    """The service's spans go nowhere (``none``: trace ids still reach logs and the next
    service), to stdout (``console``) or to an OTLP/HTTP collector (``otlp``, at ``endpoint``,
    the full traces URL, e.g. http://otel-collector:4318/v1/traces; empty: the exporter's
    default). The OTLP exporter exports in the background: an absent collector costs failed
    exports logged by OpenTelemetry, never the service."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"schoolcard-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint or None)))
    return provider


def exports(exporter: str) -> bool:
    """Whether ``SCHOOLCARD_OTEL_EXPORTER=exporter`` sends spans anywhere."""
    return exporter != "none"


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span current here, or None outside any span (formatted
    as ``TraceContextTextMapPropagator`` writes it, without building a carrier)."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{span.trace_flags:02x}"


def context_of(traceparent: str | None) -> Context:
    """The trace context ``traceparent`` names (an empty one for None or garbage: a new
    root, never the context of whatever task happens to run the code)."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({HEADER_TRACEPARENT: traceparent}, context=Context())


@contextlib.contextmanager
def under(headers: Mapping[str, str]) -> Iterator[None]:
    """Make the trace context stored in ``headers`` (an outbox record's) current."""
    token = otel_context.attach(context_of(headers.get(HEADER_TRACEPARENT)))
    try:
        yield
    finally:
        otel_context.detach(token)


def traced(routes: Routes, tracer: Tracer | None) -> Routes:
    """``routes`` whose handlers each run in a span of the message's own trace (one span per
    attempt), current while the handler runs: what it emits and logs carries the trace.
    ``tracer`` None (nothing exports): no span, the message's trace context alone is current
    — what the handler emits names the message's ``traceparent``, its log lines its ids, and
    the batch span FastStream made current is not mistaken for the message's."""

    def in_context(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def run(msg: Inbound[Any]) -> None:
            token = otel_context.attach(context_of(msg.envelope.traceparent))
            try:
                await handler(msg)
            finally:
                otel_context.detach(token)

        return run

    def wrap(handler: Handler) -> Handler:
        assert tracer is not None
        @functools.wraps(handler)
        async def run(msg: Inbound[Any]) -> None:
            env = msg.envelope
            attributes: dict[str, AttributeValue] = {
                "messaging.system": "kafka",
                "messaging.destination.name": msg.topic,
                "messaging.kafka.destination.partition": msg.partition,
                "messaging.kafka.message.offset": msg.offset,
                "messaging.message.id": env.id,
                "messaging.message.conversation_id": env.correlation_id,
                "schoolcard.type": env.type}
            with tracer.start_as_current_span(
                    f"handle {env.type.rsplit('.', 1)[-1]}", context=context_of(env.traceparent),
                    kind=SpanKind.CONSUMER, attributes=attributes):
                await handler(msg)

        return run

    wrapper = in_context if tracer is None else wrap
    return {kind: wrapper(handler) for kind, handler in routes.items()}


def service_tracer(provider: TracerProvider) -> Tracer:
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)
