"""Where the CLI finds the broker and the access token: explicit options, then environment
variables, then the ``stack.json`` a running ``make up`` stack wrote into the run directory.
How it connects (TLS, SASL credentials) comes from the same ``SCHOOLCARD_KAFKA_*`` variables
as the services' (``services.runtime.settings.KafkaSecuritySettings``)."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from contracts.catalog import required_signer
from contracts.signing import Signers, SigningKey
from services.runtime.kafka_security import KafkaConnection, kafka_connection
from services.runtime.settings import KafkaSecuritySettings

ROOT = Path(__file__).resolve().parents[2]
ENV_BOOTSTRAP = "SCHOOLCARD_KAFKA_BOOTSTRAP"
ENV_TOKEN = "SCHOOLCARD_TOKEN"
ENV_RUN_DIR = "RUN_DIR"
PRIVATE_KEY_FILE = "auth_ed25519.pem"
INTEGRATOR_KEY_DIR = "integrator_keys"


class ConfigError(Exception):
    """Something the operator must fix (no broker found, no token...); shown without a trace."""


def default_run_dir() -> Path:
    return Path(os.environ.get(ENV_RUN_DIR) or ROOT / ".run")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def bootstrap_from_stack(run_dir: Path) -> str | None:
    """The bootstrap of the stack started by ``make up`` in ``run_dir``, if it is running."""
    state = run_dir / "stack.json"
    if not state.exists():
        return None
    try:
        data = json.loads(state.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{state} is unreadable: {exc}") from None
    bootstrap = (data.get("env") or {}).get(ENV_BOOTSTRAP)
    kafka = next((p for p in data.get("procs", []) if p.get("name") == "kafka"), None)
    if kafka and not _pid_alive(int(kafka.get("pid", 0))):
        raise ConfigError(f"{state} names a Kafka broker (pid {kafka.get('pid')}) that is not "
                          "running: start the stack with `make up` or pass --bootstrap")
    return bootstrap


def resolve_bootstrap(explicit: str | None, run_dir: Path) -> str:
    if explicit:
        return explicit
    found = bootstrap_from_stack(run_dir)
    if found:
        return found
    raise ConfigError(f"no Kafka broker: pass --bootstrap, set {ENV_BOOTSTRAP}, or start the "
                      f"embedded stack with `make up` (looked for {run_dir / 'stack.json'})")


def kafka_security() -> KafkaSecuritySettings:
    """The ``SCHOOLCARD_KAFKA_*`` security settings; a contradiction is an operator error
    named in one line (the password is never part of it)."""
    try:
        return KafkaSecuritySettings()
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(f"Kafka security settings: {problems}") from None


def support_token(key_file: Path, *, ttl_s: int = 300) -> str:
    """A support-role access token signed with the dev private key of the embedded stack."""
    from contracts.auth import Role
    from services.runtime.tokens import issue_access_token

    if not key_file.exists():
        raise ConfigError(f"--as-support needs the dev private key at {key_file} (written by "
                          "`make up`); pass --key-file or --token instead")
    return issue_access_token(key_file.read_text(), account_id=f"acc_cli{secrets.token_hex(6)}",
                              session_id=f"cli-{secrets.token_hex(6)}", role=Role.SUPPORT,
                              ttl_s=ttl_s)


def integrator_key_paths(run_dir: Path, kid: str) -> tuple[Path, Path]:
    """Where ``make up`` keeps the dev key pair (private PEM, public PEM) of an integrator:
    ``integrator:payments`` -> ``<run dir>/integrator_keys/payments.pem`` and ``.pub``."""
    name = kid.removeprefix("integrator:").replace("#", "-")
    folder = run_dir / INTEGRATOR_KEY_DIR
    return folder / f"{name}.pem", folder / f"{name}.pub"


def resolve_signers(topic: str, type_name: str, run_dir: Path, key_file: Path | None,
                    signer: str | None) -> Signers:
    """The key that signs a message of ``type_name`` on ``topic`` (none when it needs no
    signature): ``key_file`` (the integrator's private PEM, key id ``signer`` or the topic's
    integrator), else the dev key ``make up`` wrote for that integrator into ``run_dir``."""
    required = required_signer(topic, type_name)
    if required is None:
        return Signers()
    kid = signer or required
    path = key_file or integrator_key_paths(run_dir, required)[0]
    if not path.exists():
        raise ConfigError(f"{type_name.rsplit('.', 1)[-1]} must be signed by {required}: pass "
                          "--signing-key (its private key) or start the embedded stack with "
                          f"`make up` (looked for {path})")
    try:
        key = SigningKey.from_pem(kid, path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"signing key {path}: {type(exc).__name__}: {exc}") from None
    if key.integrator != required:
        raise ConfigError(f"{type_name.rsplit('.', 1)[-1]} must be signed by {required}, not "
                          f"by {kid}")
    return Signers([key])


def resolve_token(token: str | None, as_support: bool, key_file: Path) -> str:
    if token and as_support:
        raise ConfigError("give either --token or --as-support, not both")
    if as_support:
        return support_token(key_file)
    if token:
        return token.removeprefix("Bearer ").strip()
    raise ConfigError(f"queries need an access token: pass --token, set {ENV_TOKEN}, or use "
                      "--as-support on the embedded stack")


@dataclass
class Settings:
    """Global options, resolved lazily (commands that never touch Kafka need no broker)."""

    bootstrap_option: str | None
    json_output: bool
    run_dir: Path
    source: str = "integrator:cli"
    signing_key: Path | None = None
    signer: str | None = None

    @property
    def bootstrap(self) -> str:
        return resolve_bootstrap(self.bootstrap_option, self.run_dir)

    @property
    def kafka(self) -> KafkaConnection:
        return kafka_connection(self.bootstrap, kafka_security())
