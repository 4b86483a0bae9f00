"""Kubernetes resources derived from the topic catalog, next to the Kafka users of
``contracts.acl``:

- one Strimzi ``KafkaTopic`` per catalog topic (its partitions, retention or compaction,
  replication factor 3, ``min.insync.replicas`` 2): production services never create topics
  (``SCHOOLCARD_PROVISION_TOPICS=false``), the topic operator does;
- per service, the KEDA ``ScaledObject`` that scales its Deployment on its consumer group's
  lag, at most one replica per partition of its busiest input topic (a consumer group gives
  each partition to one member: more replicas would idle), and the ``TriggerAuthentication``
  with which KEDA reads that lag as the service's own Kafka user (its Read on its topics and
  group covers the offset requests; nobody else's rights are borrowed).

Plain data and text, no I/O but :func:`main`: ``python -m contracts.k8s`` writes the files
(``make docs``); a test fails when they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contracts.acl import HEADER as ACL_HEADER
from contracts.acl import STRIMZI_API, STRIMZI_CLUSTER, user_name
from contracts.catalog import SERVICES, TOPICS, Topic, consumed_by

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
"""With 3 replicas and acks=all, a write survives one broker down and the topic still
takes writes; two down stop writes rather than risk losing acknowledged records."""

LAG_THRESHOLD = {"auth": 100, "wallet": 500, "access": 500, "transit": 500, "notify": 1000}
"""Records of consumer lag one replica is expected to absorb (KEDA's target per replica):
auth's commands are slow (argon2id) and interactive, notify's deliveries may wait."""
MIN_REPLICAS = 2
"""Two replicas at least (a pod lost or drained still leaves one consuming); the dev
overlay lowers it to one."""
COOLDOWN_S = 300
POLLING_S = 15

HEADER = ACL_HEADER.replace("contracts.acl", "contracts.k8s")
ROOT = Path(__file__).resolve().parents[1]
K8S_BASE = ROOT / "deploy" / "k8s" / "base"
KAFKA_TOPICS = K8S_BASE / "shared" / "kafka-topics.yaml"
WORKLOAD_NAME = "schoolcard"
"""The name of the shared base's objects; each service's kustomization suffixes it
(``schoolcard`` -> ``schoolcard-wallet``), the generated objects below included."""
CONTAINER = "service"
PART_OF = "{app.kubernetes.io/part-of: schoolcard}"


def scaling_file(service: str) -> Path:
    return K8S_BASE / service / "scaling.yaml"


def topic_config(topic: Topic) -> dict[str, str]:
    return {**topic.config(), "min.insync.replicas": str(MIN_INSYNC_REPLICAS)}


def max_replicas(service: str) -> int:
    """Replicas that can all own a partition: the partitions of the service's largest input
    topic (its group reads every input topic; each partition goes to one member)."""
    return max(t.partitions for t in consumed_by(service))


def kafka_topics_yaml(topics: tuple[Topic, ...] = TOPICS) -> str:
    """Strimzi ``KafkaTopic`` resources, one per catalog topic (each value a JSON scalar or
    flow mapping, valid YAML)."""
    lines = [f"# SchoolCard Kafka topics: {HEADER}."]
    for t in sorted(topics, key=lambda t: t.name):
        lines += ["---", f"apiVersion: {STRIMZI_API}", "kind: KafkaTopic", "metadata:",
                  f"  name: {t.name}",
                  f"  labels: {{strimzi.io/cluster: {STRIMZI_CLUSTER}, "
                  "app.kubernetes.io/part-of: schoolcard}",
                  "spec:", f"  topicName: {t.name}", f"  partitions: {t.partitions}",
                  f"  replicas: {REPLICATION_FACTOR}",
                  f"  config: {json.dumps(topic_config(t), sort_keys=True)}"]
    return "\n".join(lines) + "\n"


def scaling_yaml(service: str) -> str:
    """The service's ``ScaledObject`` and ``TriggerAuthentication``, named like the shared
    base's objects (its kustomization adds the service's suffix to all of them)."""
    user = user_name(service)
    inputs = ", ".join(t.name for t in consumed_by(service))
    trigger = {"bootstrapServersFromEnv": "SCHOOLCARD_KAFKA_BOOTSTRAP",
               "consumerGroup": user, "lagThreshold": str(LAG_THRESHOLD[service]),
               "offsetResetPolicy": "earliest", "allowIdleConsumers": "false",
               "scaleToZeroOnInvalidOffset": "false", "sasl": "scram_sha512",
               "tls": "enable"}
    return "\n".join([
        f"# SchoolCard {service}: lag-driven scaling; {HEADER}.",
        f"# Input topics: {inputs}.",
        f"# At most {max_replicas(service)} replicas: the partitions of the largest of them.",
        "apiVersion: keda.sh/v1alpha1", "kind: ScaledObject", "metadata:",
        f"  name: {WORKLOAD_NAME}", f"  labels: {PART_OF}", "spec:",
        f"  scaleTargetRef: {{name: {WORKLOAD_NAME}}}",
        f"  minReplicaCount: {MIN_REPLICAS}", f"  maxReplicaCount: {max_replicas(service)}",
        f"  pollingInterval: {POLLING_S}", f"  cooldownPeriod: {COOLDOWN_S}",
        "  triggers:", "    - type: kafka", f"      name: {service}-consumer-lag",
        f"      authenticationRef: {{name: {WORKLOAD_NAME}}}",
        f"      metadata: {json.dumps(trigger)}",
        "---", "apiVersion: keda.sh/v1alpha1", "kind: TriggerAuthentication", "metadata:",
        f"  name: {WORKLOAD_NAME}", f"  labels: {PART_OF}", "spec:",
        "  env:",
        f"    - {{parameter: username, name: SCHOOLCARD_KAFKA_SASL_USERNAME, "
        f"containerName: {CONTAINER}}}",
        "  secretTargetRef:",
        f"    - {{parameter: password, name: {user}, key: password}}",
        f"    - {{parameter: ca, name: {STRIMZI_CLUSTER}-cluster-ca-cert, key: ca.crt}}",
    ]) + "\n"


def main() -> None:
    KAFKA_TOPICS.write_text(kafka_topics_yaml())
    for service in SERVICES:
        scaling_file(service).write_text(scaling_yaml(service))
    sys.stdout.write(f"{KAFKA_TOPICS.relative_to(ROOT)} and "
                     f"{K8S_BASE.relative_to(ROOT)}/<service>/scaling.yaml regenerated\n")


if __name__ == "__main__":
    main()
