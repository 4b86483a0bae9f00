"""Who may do what on the broker, derived from the topic catalog: one principal per service
(``User:schoolcard-<service>``), per integrator (``User:integrator-<name>``), per app of
``catalog.APPS`` (``User:schoolcard-gateway``, ...) and for the operators
(``User:schoolcard-operators``).

- the producer of a topic gets Write on it, each consumer Read; nobody else gets either;
  ``apps`` in the catalog stands for every app: each app writes the topics the apps produce,
  reads the shared ``apps.replies.v1`` and, of the other topics the apps consume, those it
  ``streams``;
- a service reads its consumer group ``schoolcard-<service>`` (``Runtime.group_id``), an
  integrator or an app its own group prefix (only when they read anything);
- the services answering requests write the per-client reply topics
  ``apps.replies.<client-id>.v1`` (prefix ``apps.replies.``); each app creates and reads only
  those under its own prefix ``apps.replies.<client prefix>`` (``App.reply_prefix``), so no
  app reads another's session tokens;
- the operators read the dead letters and describe every topic and the services' groups
  (``schoolcard lag``); replaying a dead letter writes its source topic and needs that
  topic's producer's rights.

Kafka's Write and Read imply Describe, so Describe is granted only where nothing else is.
Plain data and text, no I/O: ``python -m contracts.acl`` writes
``deploy/k8s/base/shared/kafka-users.yaml`` (Strimzi ``KafkaUser`` resources) and
``deploy/kafka-acls.sh`` (the same table as ``kafka-acls.sh`` commands); ``make docs`` runs it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Literal

from contracts.catalog import APP_REPLIES, APPS_PARTY, SERVICES, TOPICS, Topic
from contracts.catalog import APPS as APP_LIST

Resource = Literal["topic", "group"]
Pattern = Literal["literal", "prefixed"]
Operation = Literal["Read", "Write", "Create", "Describe"]

APPS = APPS_PARTY
OPERATORS = "operators"
CLIENT_REPLIES_PREFIX = "apps.replies."
"""Prefix of every reply topic (``apps.replies.v1`` and the per-client
``apps.replies.<client-id>.v1`` of ``catalog.CLIENT_REPLIES_PATTERN``)."""
SERVICE_GROUP_PREFIX = "schoolcard-"
STRIMZI_CLUSTER = "schoolcard"
"""The Strimzi ``Kafka`` resource the users belong to (label ``strimzi.io/cluster``)."""
STRIMZI_API = "kafka.strimzi.io/v1"
"""The API of Strimzi's custom resources (served from Strimzi 0.49; the only one from 1.0)."""
STRIMZI_PATTERN: dict[Pattern, str] = {"literal": "literal", "prefixed": "prefix"}
"""How Strimzi spells a pattern type (``prefix``, where Kafka's tools say ``prefixed``)."""


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule: ``principal`` may ``operation`` on the ``resource`` named ``name``
    (exactly, or every name starting with it when ``pattern`` is prefixed)."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    def matches(self, resource: Resource, name: str) -> bool:
        if resource != self.resource:
            return False
        return name == self.name if self.pattern == "literal" else name.startswith(self.name)


def user_name(party: str) -> str:
    """The Kafka user of a catalog party: ``wallet`` -> ``schoolcard-wallet``,
    ``integrator:payments`` -> ``integrator-payments``."""
    if party.startswith("integrator:"):
        return "integrator-" + party.removeprefix("integrator:")
    return f"schoolcard-{party}"


def principal(party: str) -> str:
    return f"User:{user_name(party)}"


def producers(topic: Topic) -> tuple[str, ...]:
    return tuple(p.strip() for p in topic.producer.split(","))


def parties(topics: Iterable[Topic] = TOPICS) -> tuple[str, ...]:
    """Every producer and consumer named in the catalog, services first, ``apps`` replaced by
    each app's name."""
    named = {p for t in topics for p in (*producers(t), *t.consumers)}
    if APPS in named:
        named = (named - {APPS}) | {a.name for a in APP_LIST}
    return (*[s for s in SERVICES if s in named], *sorted(named - set(SERVICES)))


def writers(t: Topic) -> frozenset[str]:
    """The principals that write ``t``: its producers, every app for ``apps``."""
    out = {principal(p) for p in producers(t) if p != APPS}
    if APPS in producers(t):
        out |= {principal(a.name) for a in APP_LIST}
    return frozenset(out)


def readers(t: Topic) -> frozenset[str]:
    """The principals that read ``t``: its consumers; for ``apps``, the apps that read it (all
    of them the shared reply topic, the others only where they ``streams`` it)."""
    out = {principal(c) for c in t.consumers if c != APPS}
    if APPS in t.consumers:
        out |= {principal(a.name) for a in APP_LIST
                if t.name == APP_REPLIES or t.name in a.streams}
    return frozenset(out)


def table(topics: tuple[Topic, ...] = TOPICS) -> tuple[Acl, ...]:
    """The whole ACL table, sorted, derived from ``topics`` (the catalog by default)."""
    acls: set[Acl] = set()
    for t in topics:
        acls |= {Acl(who, "topic", t.name, "literal", "Write") for who in writers(t)}
        acls |= {Acl(who, "topic", t.name, "literal", "Read") for who in readers(t)}
        if t.name == APP_REPLIES:
            acls |= {Acl(who, "topic", CLIENT_REPLIES_PREFIX, "prefixed", "Write")
                     for who in writers(t)}
            if APPS in t.consumers:
                own: tuple[Operation, ...] = ("Read", "Create")
                acls |= {Acl(principal(a.name), "topic", a.reply_prefix, "prefixed", op)
                         for a in APP_LIST for op in own}
    reading = {a.principal for a in acls if a.operation == "Read"}
    for party in parties(topics):
        if principal(party) not in reading:
            continue
        if party in SERVICES:
            acls.add(Acl(principal(party), "group", user_name(party), "literal", "Read"))
        elif party != OPERATORS:  # the operator CLI reads by assignment, without a group
            acls.add(Acl(principal(party), "group", user_name(party), "prefixed", "Read"))
    operators = principal(OPERATORS)
    acls |= {Acl(operators, "topic", t.name, "literal", "Describe") for t in topics
             if not allowed(acls, operators, "Describe", "topic", t.name)}
    acls.add(Acl(operators, "group", SERVICE_GROUP_PREFIX, "prefixed", "Describe"))
    return tuple(sorted(acls))


def allowed(acls: Iterable[Acl], who: str, operation: Operation, resource: Resource,
            name: str) -> bool:
    """Whether ``who`` may ``operation`` on the resource (Read and Write imply Describe, as on
    the broker)."""
    implied = {"Describe": {"Describe", "Read", "Write"}}.get(operation, {operation})
    return any(a.principal == who and a.operation in implied and a.matches(resource, name)
               for a in acls)


def _grouped(acls: tuple[Acl, ...]
             ) -> list[tuple[str, list[tuple[Acl, list[Operation]]]]]:
    """Per principal, per resource: the operations granted on it."""
    out = []
    for who, rules in groupby(acls, key=lambda a: a.principal):
        per_resource: list[tuple[Acl, list[Operation]]] = []
        for _, same_it in groupby(rules, key=lambda a: (a.resource, a.name, a.pattern)):
            same = list(same_it)
            per_resource.append((same[0], [a.operation for a in same]))
        out.append((who, per_resource))
    return out


HEADER = ("generated by `python -m contracts.acl` from contracts/catalog.py (make docs); "
          "do not edit")


def kafka_users_yaml(acls: tuple[Acl, ...] | None = None) -> str:
    """Strimzi ``KafkaUser`` resources (SCRAM-SHA-512, simple authorization). Strimzi writes
    each user's password to a Secret named like the user (key ``password``), which the
    deployments read. Each ACL is one JSON flow mapping, valid YAML."""
    lines = [f"# SchoolCard Kafka users and ACLs: {HEADER}."]
    for who, resources in _grouped(acls if acls is not None else table()):
        name = who.removeprefix("User:")
        lines += ["---", f"apiVersion: {STRIMZI_API}", "kind: KafkaUser",
                  "metadata:", f"  name: {name}",
                  f"  labels: {{strimzi.io/cluster: {STRIMZI_CLUSTER}, "
                  "app.kubernetes.io/part-of: schoolcard}",
                  "spec:", "  authentication: {type: scram-sha-512}",
                  "  authorization:", "    type: simple", "    acls:"]
        for acl, operations in resources:
            rule = {"resource": {"type": acl.resource, "name": acl.name,
                                 "patternType": STRIMZI_PATTERN[acl.pattern]},
                    "operations": operations}
            lines.append(f"      - {json.dumps(rule)}")
    return "\n".join(lines) + "\n"


def kafka_acls_script(acls: tuple[Acl, ...] | None = None) -> str:
    """The same table as ``kafka-acls.sh --add`` commands, for a cluster not run by Strimzi
    (the SCRAM users themselves are created with ``kafka-configs.sh --alter --add-config``)."""
    lines = ["#!/usr/bin/env bash", f"# SchoolCard Kafka ACLs: {HEADER}.",
             "# usage: BOOTSTRAP=host:9093 COMMAND_CONFIG=admin.properties deploy/kafka-acls.sh",
             "set -euo pipefail",
             'KAFKA_ACLS="${KAFKA_ACLS:-kafka-acls.sh}"',
             'acl() { "$KAFKA_ACLS" --bootstrap-server "${BOOTSTRAP:?set BOOTSTRAP}" '
             '--command-config "${COMMAND_CONFIG:?set COMMAND_CONFIG}" --add "$@"; }']
    for who, resources in _grouped(acls if acls is not None else table()):
        lines.append(f"# {who}")
        for acl, operations in resources:
            ops = " ".join(f"--operation {op}" for op in operations)
            lines.append(f"acl --allow-principal {who} {ops} --{acl.resource} {acl.name} "
                         f"--resource-pattern-type {acl.pattern}")
    return "\n".join(lines) + "\n"


ROOT = Path(__file__).resolve().parents[1]
KAFKA_USERS = ROOT / "deploy" / "k8s" / "base" / "shared" / "kafka-users.yaml"
KAFKA_ACLS = ROOT / "deploy" / "kafka-acls.sh"


def main() -> None:
    KAFKA_USERS.write_text(kafka_users_yaml())
    KAFKA_ACLS.write_text(kafka_acls_script())
    KAFKA_ACLS.chmod(0o755)
    sys.stdout.write(f"{KAFKA_USERS.relative_to(ROOT)} and {KAFKA_ACLS.relative_to(ROOT)} "
                     "regenerated\n")


if __name__ == "__main__":
    main()
