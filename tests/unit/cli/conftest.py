"""Helpers for the CLI unit tests: a runner with a clean environment and fakes of the Kafka
side (services.cli.kafka), so commands are exercised from arguments to output."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from contracts.envelope import ContractModel, Envelope, encode
from deploy.local import stack as devstack
from services.cli import kafka
from services.cli.main import app


def raw_of(message: ContractModel, *, topic: str, key: str | None = None, partition: int = 0,
           offset: int = 0, extra: dict[str, str] | None = None,
           envelope: Envelope | None = None) -> kafka.Raw:
    env = envelope or Envelope.new(message, source="test", subject=key)
    return kafka.Raw(topic, partition, offset, 1_788_000_000_000, key, encode(message),
                     {**env.to_headers(), **(extra or {})})


class Cli:
    def __init__(self, run_dir: Path) -> None:
        self.runner = CliRunner()
        self.run_dir = run_dir

    def __call__(self, *args: str, bootstrap: str | None = "fake:9092", **kw: Any) -> Any:
        head = ["--run-dir", str(self.run_dir)]
        if bootstrap:
            head += ["--bootstrap", bootstrap]
        return self.runner.invoke(app, [*head, *args], catch_exceptions=False, **kw)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    for name in ("SCHOOLCARD_KAFKA_BOOTSTRAP", "SCHOOLCARD_TOKEN", "RUN_DIR"):
        monkeypatch.delenv(name, raising=False)
    devstack.integrator_keys(tmp_path)  # the integrators' dev keys, as `make up` writes them
    yield Cli(tmp_path)


async def agen(items: list[kafka.Raw]) -> AsyncIterator[kafka.Raw]:
    for item in items:
        yield item
