"""The broker's ACL table follows the topic catalog: each topic's producer writes it, each
consumer reads it, nobody else does either, and the generated production files
(deploy/k8s/base/shared/kafka-users.yaml, deploy/kafka-acls.sh) say exactly that."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from contracts import acl
from contracts.acl import Acl, allowed, principal, table
from contracts.catalog import (
    APP_REPLIES,
    APPS,
    CLIENT_REPLIES_PATTERN,
    SERVICES,
    TOPICS,
    topic,
    topic_for,
)
from contracts.integrations import TopUpReceived

pytestmark = pytest.mark.unit

TOPUPS = topic_for(TopUpReceived).name


def parsed_users_yaml(text: str) -> tuple[Acl, ...]:
    """The ACLs as written in the KafkaUser file (each rule is a JSON flow mapping)."""
    rules: list[Acl] = []
    name = ""
    for line in text.splitlines():
        if m := re.fullmatch(r"  name: (\S+)", line):
            name = m.group(1)
        elif line.startswith("      - {"):
            rule = json.loads(line.removeprefix("      - "))
            res = rule["resource"]
            pattern = {"prefix": "prefixed"}.get(res["patternType"], res["patternType"])
            rules += [Acl(f"User:{name}", res["type"], res["name"], pattern, op)
                      for op in rule["operations"]]
    return tuple(sorted(rules))


def parsed_script(text: str) -> tuple[Acl, ...]:
    rules: list[Acl] = []
    for line in text.splitlines():
        if not line.startswith("acl "):
            continue
        words = line.split()
        who = words[words.index("--allow-principal") + 1]
        ops = [words[i + 1] for i, w in enumerate(words) if w == "--operation"]
        kind = "topic" if "--topic" in words else "group"
        name = words[words.index(f"--{kind}") + 1]
        pattern = words[words.index("--resource-pattern-type") + 1]
        rules += [Acl(who, kind, name, pattern, op) for op in ops]
    return tuple(sorted(rules))


def everyone(acls: tuple[Acl, ...]) -> set[str]:
    return {a.principal for a in acls}


def test_the_generated_files_are_not_stale() -> None:
    assert acl.KAFKA_USERS.read_text() == acl.kafka_users_yaml(), \
        "run `make docs` (python -m contracts.acl)"
    assert acl.KAFKA_ACLS.read_text() == acl.kafka_acls_script(), \
        "run `make docs` (python -m contracts.acl)"


def test_both_files_hold_the_table_derived_from_the_catalog() -> None:
    assert parsed_users_yaml(acl.KAFKA_USERS.read_text()) == table()
    assert parsed_script(acl.KAFKA_ACLS.read_text()) == table()


@pytest.mark.parametrize("source", ["table", "kafka-users.yaml"])
@pytest.mark.parametrize("t", TOPICS, ids=lambda t: t.name)
def test_each_topic_is_written_by_its_producer_and_read_by_its_consumers_only(t, source) -> None:
    acls = table() if source == "table" else parsed_users_yaml(acl.KAFKA_USERS.read_text())
    writers = {p for p in everyone(acls) if allowed(acls, p, "Write", "topic", t.name)}
    readers = {p for p in everyone(acls) if allowed(acls, p, "Read", "topic", t.name)}
    assert writers == acl.writers(t)
    assert readers == acl.readers(t)
    apps = {principal(a.name) for a in APPS}
    assert writers & apps == (apps if "apps" in acl.producers(t) else set())
    assert "User:schoolcard-apps" not in writers | readers


def test_no_principal_has_a_wildcard_or_an_unexpected_prefix() -> None:
    for rule in table():
        assert "*" not in rule.name and "*" not in rule.principal and rule.name
        if rule.pattern == "prefixed":
            own_group = rule.resource == "group" and (
                rule.name == rule.principal.removeprefix("User:")
                or (rule.name == acl.SERVICE_GROUP_PREFIX and rule.operation == "Describe"))
            replies = rule.resource == "topic" and (
                (rule.name == acl.CLIENT_REPLIES_PREFIX and rule.operation == "Write")
                or any(rule.name == a.reply_prefix and rule.principal == principal(a.name)
                       for a in APPS))
            assert own_group or replies, rule


def test_a_group_prefix_never_covers_another_principals_group() -> None:
    prefixes = [(a.principal, a.name) for a in table()
                if a.resource == "group" and a.pattern == "prefixed" and a.operation == "Read"]
    groups = {principal(p): acl.user_name(p) for p in acl.parties()}
    for owner, prefix in prefixes:
        assert [who for who, g in groups.items() if g.startswith(prefix)] == [owner]


def test_only_the_payments_integrator_can_write_top_ups() -> None:
    acls = table()
    integrators = [p for p in acl.parties() if p.startswith("integrator:")]
    assert len(integrators) >= 5
    for party in integrators:
        assert allowed(acls, principal(party), "Write", "topic", TOPUPS) == (
            party == "integrator:payments"), party


def test_concrete_rules_that_must_hold_whatever_the_derivation() -> None:
    acls = table()
    assert not allowed(acls, "User:integrator-turnstile", "Write", "topic",
                       "integrations.topups.v1")
    assert allowed(acls, "User:integrator-payments", "Write", "topic", "integrations.topups.v1")
    assert allowed(acls, "User:schoolcard-wallet", "Read", "topic", "integrations.topups.v1")
    assert not allowed(acls, "User:schoolcard-wallet", "Write", "topic",
                       "integrations.topups.v1")
    # reissuing a card or adding a guardian's contacts is the issuer's and auth's alone
    assert not allowed(acls, "User:schoolcard-gateway", "Write", "topic",
                       "integrations.card-issuance.v1")
    assert not allowed(acls, "User:integrator-payments", "Write", "topic",
                       "integrations.card-issuance.v1")
    assert not allowed(acls, "User:schoolcard-wallet", "Write", "topic",
                       "auth.guardian-contacts.v1")
    # commands carry passwords and codes: only their service reads them
    assert not allowed(acls, "User:schoolcard-gateway", "Read", "topic", "auth.commands.v1")
    assert not allowed(acls, "User:schoolcard-notify", "Read", "topic", "auth.commands.v1")
    assert not allowed(acls, "User:schoolcard-operators", "Read", "topic", "auth.commands.v1")
    assert allowed(acls, "User:schoolcard-operators", "Describe", "topic", "auth.commands.v1")
    assert not allowed(acls, "User:integrator-payments", "Read", "topic",
                       "wallet.sale-decisions.v1")
    assert not allowed(acls, "User:schoolcard-notify", "Write", "topic", "wallet.events.v1")
    # answers to a client's own reply topic: services write it, integrators do not
    assert allowed(acls, "User:schoolcard-wallet", "Write", "topic",
                   "apps.replies.partner-kiosk-7.v1")
    assert allowed(acls, "User:schoolcard-partner", "Create", "topic",
                   "apps.replies.partner-kiosk-7.v1")
    assert not allowed(acls, "User:schoolcard-gateway", "Create", "topic",
                       "apps.replies.partner-kiosk-7.v1")
    assert allowed(acls, "User:schoolcard-gateway", "Read", "topic", "apps.replies.gw-a1.v1")
    assert not allowed(acls, "User:schoolcard-partner", "Read", "topic", "apps.replies.gw-a1.v1")
    assert not allowed(acls, "User:integrator-payments", "Write", "topic",
                       "apps.replies.partner-kiosk-7.v1")
    # there is no shared apps user any more
    assert not any(a.principal == "User:schoolcard-apps" for a in acls)
    # each service's consumer group is its own (Runtime.group_id)
    assert allowed(acls, "User:schoolcard-wallet", "Read", "group", "schoolcard-wallet")
    assert not allowed(acls, "User:schoolcard-wallet", "Read", "group", "schoolcard-access")
    assert not allowed(acls, "User:integrator-turnstile", "Read", "group", "schoolcard-access")


def test_every_service_reads_its_group_and_writes_its_dead_letters_and_replies() -> None:
    acls = table()
    for s in SERVICES:
        who = principal(s)
        assert allowed(acls, who, "Read", "group", f"schoolcard-{s}")
        assert allowed(acls, who, "Write", "topic", f"{s}.dead-letter.v1")
        assert allowed(acls, who, "Write", "topic", APP_REPLIES)
        assert allowed(acls, "User:schoolcard-operators", "Read", "topic", f"{s}.dead-letter.v1")


def test_a_consumer_added_to_the_catalog_gets_read_and_the_files_go_stale() -> None:
    """What happens when someone adds a consumer without regenerating: the derived table
    follows, so the committed files no longer match it (the staleness test fails)."""
    gate_taps = topic("integrations.gate-taps.v1")
    changed = tuple(dataclasses.replace(t, consumers=(*t.consumers, "notify"))
                    if t is gate_taps else t for t in TOPICS)
    acls = table(changed)
    assert allowed(acls, "User:schoolcard-notify", "Read", "topic", gate_taps.name)
    assert not allowed(table(), "User:schoolcard-notify", "Read", "topic", gate_taps.name)
    assert acl.kafka_users_yaml(acls) != acl.KAFKA_USERS.read_text()
    assert acl.kafka_acls_script(acls) != acl.KAFKA_ACLS.read_text()


def test_every_kafka_user_authenticates_with_scram_and_is_a_catalog_party() -> None:
    text = acl.KAFKA_USERS.read_text()
    names = re.findall(r"^  name: (\S+)$", text, flags=re.M)
    assert sorted(names) == sorted(acl.user_name(p) for p in acl.parties())
    assert text.count("authentication: {type: scram-sha-512}") == len(names)
    assert text.count("kind: KafkaUser") == len(names)


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_connects_as_its_own_kafka_user(service: str) -> None:
    base = acl.ROOT / "deploy" / "k8s" / "base"
    manifest = ((base / "common" / "deployment.yaml").read_text()
                + (base / service / "deployment-patch.yaml").read_text())
    assert "{name: SCHOOLCARD_KAFKA_SECURITY_PROTOCOL, value: SASL_SSL}" in manifest
    assert f"{{name: SCHOOLCARD_KAFKA_SASL_USERNAME, value: schoolcard-{service}}}" in manifest
    assert f"{{secretKeyRef: {{name: schoolcard-{service}, key: password}}}}" in manifest


# --- one principal per app: a reply topic is read by its own app only ---------------------


def test_the_catalog_declares_the_gateway_and_a_partner_app() -> None:
    names = {a.name: a for a in APPS}
    assert names["gateway"].reply_prefix == "apps.replies.gw-"
    assert principal("gateway") == "User:schoolcard-gateway"
    assert "partner" in names
    assert {"schoolcard-gateway", "schoolcard-partner"} <= set(
        re.findall(r"^  name: (\S+)$", acl.KAFKA_USERS.read_text(), flags=re.M))


def test_each_apps_reply_prefix_is_disjoint_from_the_others_and_from_the_shared_topic() -> None:
    prefixes = [a.reply_prefix for a in APPS]
    assert len(set(prefixes)) == len(prefixes)
    for p in prefixes:
        assert not APP_REPLIES.startswith(p)
        for q in prefixes:
            assert p == q or not q.startswith(p), (p, q)
    for a in APPS:
        assert re.fullmatch(CLIENT_REPLIES_PATTERN, a.reply_topic("x1"))


@pytest.mark.parametrize("owner", APPS, ids=lambda a: a.name)
@pytest.mark.parametrize("other", APPS, ids=lambda a: a.name)
def test_an_app_cannot_read_or_create_another_apps_reply_topics(owner, other) -> None:
    acls = parsed_users_yaml(acl.KAFKA_USERS.read_text())
    theirs = owner.reply_topic("instance-1")
    for operation in ("Read", "Create", "Describe"):
        assert allowed(acls, principal(other.name), operation, "topic", theirs) == (
            owner == other), (other.name, operation, theirs)


def test_no_app_may_read_or_create_a_reply_topic_outside_its_prefix() -> None:
    acls = table()
    for a in APPS:
        who = principal(a.name)
        assert not allowed(acls, who, "Read", "topic", "apps.replies.test-1.v1")
        assert not allowed(acls, who, "Create", "topic", "apps.replies.test-1.v1")
        assert allowed(acls, who, "Read", "topic", APP_REPLIES)
        assert not allowed(acls, who, "Create", "topic", APP_REPLIES)


@pytest.mark.parametrize("service", SERVICES)
def test_the_services_still_write_every_apps_replies(service: str) -> None:
    acls = parsed_users_yaml(acl.KAFKA_USERS.read_text())
    for a in APPS:
        assert allowed(acls, principal(service), "Write", "topic", a.reply_topic("i-1"))
        assert not allowed(acls, principal(service), "Read", "topic", a.reply_topic("i-1"))


def test_only_the_gateway_streams_deliveries() -> None:
    acls = table()
    assert allowed(acls, "User:schoolcard-gateway", "Read", "topic", "notify.deliveries.v1")
    assert not allowed(acls, "User:schoolcard-partner", "Read", "topic", "notify.deliveries.v1")
    for a in APPS:
        assert allowed(acls, principal(a.name), "Write", "topic", "wallet.commands.v1")
