"""Traces through the outbox without a broker: a handler runs in a span of its message's trace,
what it emits keeps that trace, and a log line written inside a span names it."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.envelope import Envelope
from contracts.integrations import CardIssued
from services.runtime.consumer import Inbound
from services.runtime.logs import configure_logging, get_logger
from services.runtime.mongo import Transaction
from services.runtime.tracing import current_traceparent, service_tracer, traced

pytestmark = pytest.mark.unit

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


def card() -> CardIssued:
    return CardIssued(contract="40012345", card_uid="A1B2C3D4E5F601", school_id="s-1",
                      school_tz="Europe/Samara", student_id="stu-1", class_name="5A",
                      birth_date=date(2014, 3, 8), issued_at=datetime.now(UTC))


def inbound(traceparent: str | None) -> Inbound[CardIssued]:
    message = card()
    envelope = Envelope.new(message, source="integrator:test").model_copy(
        update={"traceparent": traceparent})
    return Inbound(message, envelope, "integrations.card-issuance.v1", 0, 7, "40012345", None)


def transaction(cause: Envelope | None) -> Transaction:
    return Transaction(session=None, db=None, source="access", cause=cause,  # type: ignore[arg-type]
                       now=datetime.now(UTC))


@pytest.fixture
def spans() -> tuple[InMemorySpanExporter, Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, service_tracer(provider)


def ids(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


async def test_a_handler_runs_in_a_span_of_its_message_trace_and_what_it_emits_keeps_it(spans):
    exporter, tracer = spans
    emitted: list[Envelope] = []

    async def handler(msg: Inbound[Any]) -> None:
        tx = transaction(msg.envelope)
        emitted.append(tx.emit("access.events.v1", "40012345", card()))

    routes = traced({CardIssued: handler}, tracer)
    await routes[CardIssued](inbound(TRACEPARENT))
    [span] = exporter.get_finished_spans()
    assert isinstance(span, ReadableSpan) and span.name == "handle CardIssued"
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT
    assert format(span.context.trace_id, "032x") == TRACE
    assert ids(emitted[0].traceparent) == (TRACE, format(span.context.span_id, "016x"))
    assert emitted[0].to_headers()["traceparent"] == emitted[0].traceparent


async def test_a_message_without_trace_context_starts_a_new_trace(spans):
    exporter, tracer = spans
    with tracer.start_as_current_span("the consumer's batch"):
        await traced({CardIssued: _noop}, tracer)[CardIssued](inbound(None))
    handled = [s for s in exporter.get_finished_spans() if s.name == "handle CardIssued"]
    assert handled[0].parent is None


async def _noop(msg: Inbound[Any]) -> None:
    return None


def test_outside_any_span_an_emitted_message_keeps_its_cause_trace_or_none():
    assert current_traceparent() is None
    cause = inbound(TRACEPARENT).envelope
    assert transaction(cause).emit("t.v1", "k", card()).traceparent == TRACEPARENT
    assert transaction(None).emit("t.v1", "k", card()).traceparent is None


def test_a_log_line_inside_a_span_carries_its_trace_and_span_ids(spans):
    _, tracer = spans
    configure_logging("test", json=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    out = io.StringIO()
    previous = handler.setStream(out)
    try:
        log = get_logger("schoolcard.test")
        with tracer.start_as_current_span("work") as span:
            log.info("inside")
            logging.getLogger("faststream").warning("library line inside")
        log.info("outside")
    finally:
        handler.setStream(previous)
        structlog.contextvars.clear_contextvars()
    lines = {line["event"]: line for line in map(json.loads, out.getvalue().splitlines())}
    trace_id = format(span.get_span_context().trace_id, "032x")
    span_id = format(span.get_span_context().span_id, "016x")
    for event in ("inside", "library line inside"):
        assert (lines[event]["trace_id"], lines[event]["span_id"]) == (trace_id, span_id)
    assert "trace_id" not in lines["outside"] and "span_id" not in lines["outside"]


async def test_without_an_exporter_a_handler_runs_in_its_message_context_with_no_span(spans):
    exporter, tracer = spans
    emitted: list[Envelope] = []
    seen: list[str | None] = []

    async def handler(msg: Inbound[Any]) -> None:
        seen.append(current_traceparent())
        emitted.append(transaction(msg.envelope).emit("access.events.v1", "40012345", card()))

    routes = traced({CardIssued: handler}, None)
    with tracer.start_as_current_span("the consumer's batch"):
        await routes[CardIssued](inbound(TRACEPARENT))
        await routes[CardIssued](inbound(None))
        after = current_traceparent()
    assert [s.name for s in exporter.get_finished_spans()] == ["the consumer's batch"]
    assert seen == [TRACEPARENT, None]  # the message's context, never the batch's span
    assert emitted[0].traceparent == TRACEPARENT and emitted[1].traceparent is None
    assert after is not None and ids(after)[0] != TRACE  # the batch's context is back


def test_the_current_traceparent_is_what_the_w3c_propagator_writes(spans):
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _, tracer = spans
    with tracer.start_as_current_span("work"):
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        assert current_traceparent() == carrier["traceparent"]
