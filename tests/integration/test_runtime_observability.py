"""What a running service shows of itself, against the real broker and MongoDB-protocol server:
one trace runs from a gate tap through access to notify (spans caught by in-memory exporters);
a consumer that is behind exports its lag per partition, equal to its group's uncommitted
records; /metrics carries the lag of every partition a service consumes; /healthz answers 503
once the consumer's task is gone."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY

from contracts.integrations import GateTapped
from services.runtime.broker import ConsumerLag, group_lag, make_broker
from services.runtime.consumer import Consumer, Inbound
from services.runtime.kafka_security import KafkaConnection
from tests.integration.conftest import infra_settings
from tests.integration.test_access_gate import (
    issue,
    local,
    new_card,
    school,
    set_schedule,
    tap,
)
from tests.support import FakeClock, Integrator, Requester, TopicReader, eventually, uid

pytestmark = pytest.mark.integration

TAPS = "integrations.gate-taps.v1"


def tracing(service: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


async def test_one_trace_runs_from_the_gate_through_access_to_notify(
        service_runner: Any, bootstrap: str, infra: dict[str, str]) -> None:
    trace_id, gate_span = secrets.token_hex(16), "00f067aa0ba902b7"
    access_spans, notify_spans = InMemorySpanExporter(), InMemorySpanExporter()
    clock = FakeClock(local("08:00"))
    async with service_runner("access", clock=clock,
                              tracing=tracing("access", access_spans)), \
            service_runner("notify", tracing=tracing("notify", notify_spans)), \
            Integrator(bootstrap) as pub, Requester(bootstrap) as req, \
            TopicReader(bootstrap, "access.gate-decisions.v1") as decisions, \
            TopicReader(bootstrap, "access.allow-list.v1") as allow:
        io = {"pub": pub, "req": req, "allow": allow, "key": infra["AUTH_PRIVATE_KEY"],
              "clock": clock}
        here = school()
        await set_schedule(io, here)
        card = new_card(here)
        await issue(io, card)
        entry = tap(card, local("07:50"))
        sent = await pub.publish(entry, entry.card_uid,
                                 headers={"traceparent": f"00-{trace_id}-{gate_span}-01"})

        [decision] = await decisions.wait_for(lambda r: r.json()["tap_id"] == entry.tap_id,
                                              timeout=60)
        assert decision.json()["allowed"] is True
        assert decision.headers["traceparent"].split("-")[1] == trace_id

        async def notify_handled_the_entry() -> list[ReadableSpan]:
            return [s for s in notify_spans.get_finished_spans()
                    if s.name == "handle StudentEntered" and s.attributes is not None
                    and s.attributes["messaging.message.conversation_id"]
                    == sent.correlation_id]

        [handled] = await eventually(notify_handled_the_entry, timeout=60,
                                     what="notify's span of access's StudentEntered")

    [tapped] = [s for s in access_spans.get_finished_spans() if s.name == "handle GateTapped"
                and s.attributes is not None
                and s.attributes["messaging.message.id"] == sent.id]
    assert hex_trace(tapped) == trace_id
    assert tapped.parent is not None and format(tapped.parent.span_id, "016x") == gate_span
    in_trace = [s for s in access_spans.get_finished_spans() if hex_trace(s) == trace_id]
    published = {s.name for s in in_trace if s.kind == SpanKind.PRODUCER}
    assert {"access.gate-decisions.v1 publish", "access.events.v1 publish"} <= published
    assert hex_trace(handled) == trace_id
    # notify's span hangs under the span access published the event in
    assert handled.parent is not None
    assert handled.parent.span_id in {s.context.span_id for s in in_trace if s.context}


async def test_a_consumer_behind_exports_its_lag_per_partition(
        bootstrap: str, infra: dict[str, str]) -> None:
    """The handler holds the first record: nothing is committed, and the exported lag of the
    consumer's partitions adds up to what its group has not committed; once it lets go, the
    lag falls to zero."""
    service, group = uid("lagged"), uid("lag-group")
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(msg: Inbound[GateTapped]) -> None:
        started.set()
        await release.wait()

    broker = make_broker(service, infra_settings(infra))
    consumer = Consumer(broker, service, {GateTapped: slow}, group_id=group, batch_max=10)
    lag = ConsumerLag(service, lambda: consumer.subscriber.consumer, KafkaConnection(bootstrap),
                      group)
    card = new_card(school())
    async with Integrator(bootstrap) as pub:
        for _ in range(3):
            await pub.publish(tap(card, local("07:50")), card.card_uid)
    await broker.start()
    try:
        async def behind() -> dict[Any, int] | None:
            measured = await lag.update() if started.is_set() else {}
            return measured if sum(measured.values()) > 0 else None

        measured = await eventually(behind, timeout=60, what="the consumer's lag measured")
        assert sum(measured.values()) == await group_lag(KafkaConnection(bootstrap), group,
                                                         TAPS)
        for tp, behind_by in measured.items():
            assert tp.topic == TAPS
            assert REGISTRY.get_sample_value("schoolcard_consumer_lag", {
                "service": service, "topic": TAPS,
                "partition": str(tp.partition)}) == behind_by
        release.set()

        async def caught_up() -> bool:
            return sum((await lag.update()).values()) == 0

        await eventually(caught_up, timeout=60, what="the lag back to zero")
    finally:
        release.set()
        await lag.close()
        await broker.stop()


async def test_a_service_exports_consumer_lag_and_its_healthz_fails_once_its_consumer_died(
        service_runner: Any) -> None:
    async with service_runner("transit", consumer_lag_interval_s=0.2) as svc, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.http_port}") as http:
        healthz = await http.get("/healthz")
        assert healthz.status_code == 200, healthz.text
        assert healthz.json()["consumer"] is True and healthz.json()["outbox-relay"] is True

        async def lag_of_every_partition() -> set[str] | None:
            assigned = svc.consumer.subscriber.consumer.assignment()
            text = (await http.get("/metrics")).text
            lines = {line.split(" ")[0] for line in text.splitlines()
                     if line.startswith('schoolcard_consumer_lag{') and 'service="transit"' in line}
            wanted = {f'schoolcard_consumer_lag{{partition="{tp.partition}",service="transit",'
                      f'topic="{tp.topic}"}}' for tp in assigned}
            return lines if assigned and wanted <= lines else None

        await eventually(lag_of_every_partition, timeout=60,
                         what="schoolcard_consumer_lag of every assigned partition")

        for task in svc.consumer.subscriber.tasks:
            task.cancel()

        async def dead() -> httpx.Response | None:
            answer = await http.get("/healthz")
            return answer if answer.status_code == 503 else None

        answer = await eventually(dead, timeout=10, what="/healthz answering 503")
        assert answer.json()["alive"] is False and answer.json()["consumer"] is False
