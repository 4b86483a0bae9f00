"""The attendance checks judge from gate taps, so they wait while the taps are not in: after an
outage, access restarts with a backlog and must not mark present children absent (or report
them missing at the first lesson) before it has read what the gates sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.access.handlers import GATE_TAPS, Handlers

pytestmark = pytest.mark.unit


class StubRuntime:
    """Only what the sweep touches before it reads the database; reading it fails the test."""

    def __init__(self, behind: int, max_lag: int) -> None:
        self.behind = behind
        self.asked: list[str] = []
        self.settings: Any = type("S", (), {"sweep_max_lag": max_lag})()

    async def lag(self, topic: str) -> int:
        self.asked.append(topic)
        return self.behind

    def clock(self) -> datetime:
        return datetime(2026, 9, 1, 6, 0, tzinfo=UTC)

    @property
    def db(self) -> Any:
        raise AssertionError("the sweep read the database while the taps were behind")


async def test_the_sweep_waits_while_the_gate_taps_are_behind() -> None:
    rt = StubRuntime(behind=201, max_lag=200)
    await Handlers(rt).sweep()  # type: ignore[arg-type]
    assert rt.asked == [GATE_TAPS] == ["integrations.gate-taps.v1"]


async def test_the_sweep_runs_once_the_taps_are_in() -> None:
    rt = StubRuntime(behind=200, max_lag=200)
    with pytest.raises(AssertionError, match="read the database"):
        await Handlers(rt).sweep()  # type: ignore[arg-type]
