"""Auth's signing key and pepper reach the auth process alone: what the dev stack starts (the
same code the system and fault suites use) is read back from each real process's
/proc/<pid>/environ. Auth without a pepper ends at once, naming the missing variable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploy.local import stack as devstack

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")]

SECRETS = ("AUTH_PRIVATE_KEY", "AUTH_PEPPER")


def environ_of(proc: devstack.Proc) -> dict[str, str]:
    raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def test_only_the_auth_process_holds_the_signing_key_and_the_pepper(
        infra: dict[str, str], run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    # Also what a developer's shell would pass on: the stack must not hand it down either.
    monkeypatch.setenv("AUTH_PRIVATE_KEY", infra["AUTH_PRIVATE_KEY"])
    procs: dict[str, devstack.Proc] = {}
    try:
        environs = {}
        for name in devstack.SERVICES:
            procs[name] = devstack.start_service(name, run_dir, infra, instance="env-check")
            # /proc/<pid>/environ can read empty for a moment after Popen returns (seen under
            # load): wait until the kernel shows the environment the process was given.
            devstack.wait_for(lambda p=procs[name]: bool(environ_of(p)), timeout=30,
                              what=f"the environment of {name}")
            environs[name] = environ_of(procs[name])
    finally:
        for proc in procs.values():
            proc.stop()
    for name, environ in environs.items():
        assert environ.get("SCHOOLCARD_AUTH_PUBLIC_KEY") == infra["SCHOOLCARD_AUTH_PUBLIC_KEY"], \
            (name, sorted(environ))
        held = {s for s in SECRETS if s in environ}
        if name == "auth":
            assert held == set(SECRETS)
            assert environ["AUTH_PRIVATE_KEY"] == infra["AUTH_PRIVATE_KEY"]
        else:
            assert held == set(), f"{name} was given {sorted(held)}"
            assert not any(k.startswith("AUTH_") for k in environ), name


def test_auth_without_a_pepper_ends_at_start_naming_auth_pepper(
        infra: dict[str, str], run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AUTH_PEPPER", raising=False)
    env = {k: v for k, v in infra.items() if k != "AUTH_PEPPER"}
    proc = devstack.start_service("auth", run_dir, env, instance="no-pepper")
    try:
        devstack.wait_for(lambda: not proc.alive(), timeout=60, what="auth to refuse to start")
    finally:
        proc.stop()
    log = Path(proc.log).read_text(errors="replace")
    assert "auth cannot start: AUTH_PEPPER: Field required" in log
    assert infra["AUTH_PRIVATE_KEY"] not in log
