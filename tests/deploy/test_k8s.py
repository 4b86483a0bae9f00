"""The Kubernetes overlays, rendered by ``kubectl kustomize`` and checked offline: every object
validates against the Kubernetes and operators' schemas, every catalog topic has its
KafkaTopic, every service scales on its lag up to its partitions, drains within its grace
period, and reads only its own Secrets."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from contracts import k8s
from contracts.catalog import SERVICES, TOPICS, consumed_by, topic
from services.runtime.settings import ServiceSettings
from tests.deploy.support import (
    OVERLAYS,
    ROOT,
    Obj,
    env_of,
    of_kind,
    problems,
    render,
    secret_refs,
    walk,
)

pytestmark = pytest.mark.unit

OUTBOX_FLUSH_S = 5
"""What a stopping service spends flushing its outbox after the message in hand
(services/runtime/mongo.py, OutboxRelay.stop)."""
MARGIN_S = 10
AUTH_SECRETS = "schoolcard-auth-secrets"


def allowed_secrets(service: str) -> set[str]:
    own = {f"schoolcard-{service}", f"schoolcard-{service}-mongo", "schoolcard-cluster-ca-cert"}
    return own | ({AUTH_SECRETS} if service == "auth" else set())


def secret_leaks(objs: tuple[Obj, ...]) -> list[str]:
    """Secrets a Deployment or TriggerAuthentication reads that are not its service's."""
    leaks = []
    for service in SERVICES:
        name = f"schoolcard-{service}"
        deployment = of_kind(objs, "Deployment")[name]
        read = secret_refs(deployment["spec"]["template"]["spec"])
        trigger = of_kind(objs, "TriggerAuthentication").get(name, {"spec": {}})
        read |= {r["name"] for r in trigger["spec"].get("secretTargetRef", [])}
        leaks += [f"{service} reads {s}" for s in sorted(read - allowed_secrets(service))]
    return leaks


def missing_topics(objs: tuple[Obj, ...], topics: tuple = TOPICS) -> list[str]:
    declared = {o["spec"].get("topicName", o["metadata"]["name"])
                for o in of_kind(objs, "KafkaTopic").values()}
    return sorted(t.name for t in topics if t.name not in declared)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_every_service(overlay: str) -> None:
    objs = render(overlay)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy",
                 "ServiceMonitor", "ScaledObject", "TriggerAuthentication"):
        names = set(of_kind(objs, kind))
        assert {f"schoolcard-{s}" for s in SERVICES} <= names, (kind, names)
    assert of_kind(objs, "PrometheusRule")
    assert of_kind(objs, "ConfigMap")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_against_its_schema(overlay: str) -> None:
    found = [p for obj in render(overlay) for p in problems(obj)]
    assert found == []


def test_a_misspelt_or_misplaced_field_fails_validation() -> None:
    objs = render("prod")
    deployment = copy.deepcopy(of_kind(objs, "Deployment")["schoolcard-wallet"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    scaled = copy.deepcopy(of_kind(objs, "ScaledObject")["schoolcard-wallet"])
    scaled["spec"]["maxReplicas"] = 3
    topic_ = copy.deepcopy(next(iter(of_kind(objs, "KafkaTopic").values())))
    topic_["spec"]["partitions"] = 0
    user = copy.deepcopy(next(iter(of_kind(objs, "KafkaUser").values())))
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "prefixed"
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    for broken in (deployment, scaled, topic_, user, unknown):
        assert problems(broken), broken["kind"]


def test_every_catalog_topic_has_a_kafka_topic_with_its_settings() -> None:
    objs = render("prod")
    assert missing_topics(objs) == []
    for name, obj in of_kind(objs, "KafkaTopic").items():
        t = topic(obj["spec"]["topicName"])
        assert name == t.name
        assert obj["spec"]["partitions"] == t.partitions
        assert obj["spec"]["replicas"] == 3
        config = obj["spec"]["config"]
        assert config["min.insync.replicas"] == "2"
        assert config["cleanup.policy"] == ("compact" if t.compacted else "delete")
        if not t.compacted and t.retention_ms is not None:
            assert config["retention.ms"] == str(t.retention_ms)
        assert obj["metadata"]["labels"]["strimzi.io/cluster"] == "schoolcard"


def test_a_topic_added_to_the_catalog_without_regenerating_is_missing() -> None:
    added = dataclasses.replace(TOPICS[0], name="wallet.vouchers.v1")
    assert missing_topics(render("prod"), (*TOPICS, added)) == ["wallet.vouchers.v1"]
    assert added.name in k8s.kafka_topics_yaml((*TOPICS, added))
    assert k8s.kafka_topics_yaml((*TOPICS, added)) != k8s.KAFKA_TOPICS.read_text()


def test_the_dev_overlay_only_lowers_replication_for_its_one_broker() -> None:
    for obj in of_kind(render("dev"), "KafkaTopic").values():
        assert obj["spec"]["replicas"] == 1
        assert obj["spec"]["config"]["min.insync.replicas"] == "1"
        assert obj["spec"]["partitions"] == topic(obj["spec"]["topicName"]).partitions


def test_the_generated_topics_and_scaling_are_up_to_date() -> None:
    """``make docs`` regenerates them from the catalog; run it when this fails."""
    assert k8s.KAFKA_TOPICS.read_text() == k8s.kafka_topics_yaml()
    for service in SERVICES:
        assert k8s.scaling_file(service).read_text() == k8s.scaling_yaml(service), service


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_scales_on_its_group_lag_up_to_its_partitions(overlay: str,
                                                                   service: str) -> None:
    objs = render(overlay)
    name = f"schoolcard-{service}"
    scaled = of_kind(objs, "ScaledObject")[name]["spec"]
    most = max(t.partitions for t in consumed_by(service))
    assert scaled["maxReplicaCount"] == most
    assert 1 <= scaled["minReplicaCount"] <= most
    assert scaled["scaleTargetRef"]["name"] == name
    assert name in of_kind(objs, "Deployment")
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == name
    assert trigger["authenticationRef"]["name"] in of_kind(objs, "TriggerAuthentication")
    assert "replicas" not in of_kind(objs, "Deployment")[name]["spec"]  # KEDA's to set


@pytest.mark.parametrize("service", SERVICES)
def test_each_deployment_drains_within_its_grace_period_and_has_probes_and_limits(
        service: str) -> None:
    deployment = of_kind(render("prod"), "Deployment")[f"schoolcard-{service}"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(deployment)
    grace = float(env.get(f"{service.upper()}_SHUTDOWN_GRACE_S",
                          ServiceSettings.model_fields["shutdown_grace_s"].default))
    assert pod["terminationGracePeriodSeconds"] >= grace + OUTBOX_FLUSH_S + MARGIN_S
    assert container["command"] == ["python", "-m", f"services.{service}"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert env[f"{service.upper()}_HTTP_PORT"] == "8080"
    assert env["SCHOOLCARD_KAFKA_SASL_USERNAME"] == f"schoolcard-{service}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_never_create_topics_and_produce_idempotently(overlay: str) -> None:
    objs = render(overlay)
    [config] = [c for n, c in of_kind(objs, "ConfigMap").items()
                if n.startswith("schoolcard-config")]
    assert config["data"]["SCHOOLCARD_PROVISION_TOPICS"] == "false"
    assert config["data"]["SCHOOLCARD_KAFKA_IDEMPOTENCE"] == "true"
    for name, deployment in of_kind(objs, "Deployment").items():
        env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in env_from, name
        assert "SCHOOLCARD_PROVISION_TOPICS" not in env_of(deployment), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_auth_reads_the_auth_secret_and_each_service_only_its_own(overlay: str) -> None:
    objs = render(overlay)
    assert secret_leaks(objs) == []
    auth = of_kind(objs, "Deployment")["schoolcard-auth"]["spec"]["template"]["spec"]
    assert AUTH_SECRETS in secret_refs(auth)
    assert of_kind(objs, "Secret") == {}, "secret values are never committed"


def test_a_secret_handed_to_another_service_is_reported() -> None:
    objs = copy.deepcopy(render("prod"))
    wallet = of_kind(objs, "Deployment")["schoolcard-wallet"]
    wallet["spec"]["template"]["spec"]["containers"][0]["envFrom"].append(
        {"secretRef": {"name": AUTH_SECRETS}})
    notify = of_kind(objs, "Deployment")["schoolcard-notify"]
    notify["spec"]["template"]["spec"]["volumes"].append(
        {"name": "x", "secret": {"secretName": "schoolcard-wallet-mongo"}})
    assert secret_leaks(objs) == [f"wallet reads {AUTH_SECRETS}",
                                  "notify reads schoolcard-wallet-mongo"]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_mongodb_user_limited_to_its_database(service: str) -> None:
    deployment = of_kind(render("prod"), "Deployment")[f"schoolcard-{service}"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    [uri] = [e for e in container["env"] if e["name"] == "SCHOOLCARD_MONGO_URI"]
    assert uri["valueFrom"]["secretKeyRef"]["name"] == f"schoolcard-{service}-mongo"
    module = __import__(f"services.{service}.settings", fromlist=["Settings"])
    database = module.Settings.model_fields["mongo_db"].default
    assert database == f"schoolcard_{service}"
    script = (ROOT / "deploy" / "mongo" / "create-users.js").read_text()
    assert f'"{service}"' in script.split("const SERVICES = [")[1].split("]")[0]
    assert "{ role: \"readWrite\", db: dbName }" in script
    assert "anyDatabase" not in script and "root" not in script


@pytest.mark.parametrize("service", SERVICES)
def test_policies_monitors_and_budgets_select_the_service_pods(service: str) -> None:
    objs = render("prod")
    name = f"schoolcard-{service}"
    pod_labels = of_kind(objs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
    service_labels = of_kind(objs, "Service")[name]["metadata"]["labels"]
    selectors = {
        "PodDisruptionBudget": (of_kind(objs, "PodDisruptionBudget")[name]["spec"]["selector"]
                                ["matchLabels"], pod_labels),
        "NetworkPolicy": (of_kind(objs, "NetworkPolicy")[name]["spec"]["podSelector"]
                          ["matchLabels"], pod_labels),
        "ServiceMonitor": (of_kind(objs, "ServiceMonitor")[name]["spec"]["selector"]
                           ["matchLabels"], service_labels),
    }
    for kind, (selector, labels) in selectors.items():
        assert selector.items() <= labels.items(), kind
        assert selector["app.kubernetes.io/name"] == name, kind
    others = [o for o in of_kind(objs, "Deployment").values() if o["metadata"]["name"] != name]
    for other in others:
        other_labels = other["spec"]["template"]["metadata"]["labels"]
        assert not pod_labels.items() <= other_labels.items()
    policy = of_kind(objs, "NetworkPolicy")[name]["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    # peers are never matchLabels: kustomize would narrow them to this service's pods
    assert not any(isinstance(n, dict) and "matchLabels" in n
                   for rule in policy["egress"] for n in walk(rule["to"]))


# --- the gateway: stateless, scaled on CPU, reached through the ingress ------------------------

GATEWAY = "schoolcard-gateway"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_is_deployed_with_its_autoscaler_ingress_budget_and_monitor(
        overlay: str) -> None:
    objs = render(overlay)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy",
                 "ServiceMonitor", "HorizontalPodAutoscaler", "Ingress", "KafkaUser"):
        assert GATEWAY in of_kind(objs, kind), (kind, overlay)
    hpa = of_kind(objs, "HorizontalPodAutoscaler")[GATEWAY]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": GATEWAY}
    assert hpa["minReplicas"] == (2 if overlay == "prod" else 1) <= hpa["maxReplicas"]
    assert "replicas" not in of_kind(objs, "Deployment")[GATEWAY]["spec"]  # the HPA's to set
    ingress = of_kind(objs, "Ingress")[GATEWAY]["spec"]
    assert ingress["tls"] and ingress["rules"][0]["http"]["paths"][0]["backend"]["service"][
        "name"] == GATEWAY


def test_the_gateway_drains_within_its_grace_period_and_reads_no_database_or_auth_secret(
        ) -> None:
    deployment = of_kind(render("prod"), "Deployment")[GATEWAY]
    pod = deployment["spec"]["template"]["spec"]
    env = env_of(deployment)
    assert pod["containers"][0]["command"] == ["python", "-m", "services.gateway"]
    assert pod["terminationGracePeriodSeconds"] >= float(env["GATEWAY_SHUTDOWN_GRACE_S"]) + 10
    assert env["SCHOOLCARD_KAFKA_SASL_USERNAME"] == GATEWAY
    assert secret_refs(pod) == {GATEWAY, "schoolcard-cluster-ca-cert"}
    assert not any("MONGO" in name for name in env)


def test_the_gateway_lets_the_ingress_controller_in_and_reaches_no_database() -> None:
    policy = of_kind(render("prod"), "NetworkPolicy")[GATEWAY]["spec"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert 27017 not in egress_ports and 9093 in egress_ports
    sources = [e["values"] for rule in policy["ingress"] for peer in rule["from"]
               for e in peer["namespaceSelector"]["matchExpressions"]]
    assert ["ingress-nginx"] in sources and ["monitoring"] in sources
