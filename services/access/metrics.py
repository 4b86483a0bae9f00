"""Access's domain counters, from the events of committed transactions (``UnitOfWork.observe``:
each committed event counted once)."""

from __future__ import annotations

from prometheus_client import Counter

from contracts import access as wire
from contracts.envelope import ContractModel

PASSAGES = Counter("schoolcard_access_passages_total", "Entries and exits recorded",
                   ["direction"])
DENIALS = Counter("schoolcard_access_gate_denials_total", "Gate decisions that kept the "
                  "turnstile shut, by reason", ["reason"])


def observe(messages: list[ContractModel]) -> None:
    for m in messages:
        if isinstance(m, wire.StudentEntered):
            PASSAGES.labels("entry").inc()
        elif isinstance(m, wire.StudentLeft):
            PASSAGES.labels("exit").inc()
        elif isinstance(m, wire.GateDecision) and not m.allowed:
            DENIALS.labels(m.reason.value if m.reason else "unknown").inc()
