"""JSON Schemas of the operators' custom resources the manifests use, written for this project
from the CRDs of KEDA 2.20 (keda.sh/v1alpha1 ScaledObject, TriggerAuthentication), Strimzi 1.2
(kafka.strimzi.io/v1 KafkaTopic, KafkaUser) and prometheus-operator 0.93
(monitoring.coreos.com/v1 ServiceMonitor, PrometheusRule).

They cover the fields SchoolCard sets, with the CRDs' types, enums, minimums and required
fields, and refuse any other field (``additionalProperties: false``, like the API server's
strict field validation): a misspelt or misplaced field fails here rather than being pruned
in the cluster. A field the manifests start to use must be added here from the CRD of that
version; the upstream CRD files themselves are not copied into the repository.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
DURATION = {"type": "string",
            "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                       r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
STRING = {"type": "string"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def obj(properties: dict[str, Schema], *required: str) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


def array(items: Schema, min_items: int = 0) -> Schema:
    return {"type": "array", "items": items, "minItems": min_items}


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    return obj({"apiVersion": {"const": api_version}, "kind": {"const": kind},
                "metadata": obj({"name": {"type": "string", "minLength": 1},
                                 "namespace": STRING, "labels": STRING_MAP,
                                 "annotations": STRING_MAP}, "name"),
                "spec": spec}, "apiVersion", "kind", "metadata", "spec")


SCALED_OBJECT = resource("keda.sh/v1alpha1", "ScaledObject", obj({
    "scaleTargetRef": obj({"apiVersion": STRING, "kind": STRING,
                           "name": {"type": "string", "minLength": 1},
                           "envSourceContainerName": STRING}, "name"),
    "minReplicaCount": {"type": "integer", "minimum": 0},
    "maxReplicaCount": {"type": "integer", "minimum": 1},
    "pollingInterval": {"type": "integer", "minimum": 1},
    "cooldownPeriod": {"type": "integer", "minimum": 0},
    "triggers": array(obj({
        "type": {"type": "string", "minLength": 1}, "name": STRING,
        "metadata": STRING_MAP, "metricType": STRING, "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": obj({"name": STRING, "kind": {
            "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}}, "name"),
    }, "metadata", "type"), min_items=1),
}, "scaleTargetRef", "triggers"))

TRIGGER_AUTHENTICATION = resource("keda.sh/v1alpha1", "TriggerAuthentication", obj({
    "secretTargetRef": array(obj({"parameter": STRING, "name": STRING, "key": STRING},
                                 "key", "name", "parameter")),
    "env": array(obj({"parameter": STRING, "name": STRING, "containerName": STRING},
                     "name", "parameter")),
}))

KAFKA_TOPIC = resource("kafka.strimzi.io/v1", "KafkaTopic", obj({
    "topicName": STRING,
    "partitions": {"type": "integer", "minimum": 1},
    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
    "config": {"type": "object"},
}))

KAFKA_USER = resource("kafka.strimzi.io/v1", "KafkaUser", obj({
    "authentication": obj({"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}},
                          "type"),
    "authorization": obj({
        "type": {"enum": ["simple"]},
        "acls": array(obj({
            "type": {"enum": ["allow", "deny"]},
            "host": STRING,
            "resource": obj({"type": {"enum": ["topic", "group", "cluster",
                                               "transactionalId"]},
                             "name": STRING,
                             "patternType": {"enum": ["literal", "prefix"]}}, "type"),
            "operations": array({"enum": ["Read", "Write", "Create", "Delete", "Alter",
                                          "Describe", "ClusterAction", "AlterConfigs",
                                          "DescribeConfigs", "IdempotentWrite", "All"]}),
        }, "resource", "operations")),
    }, "acls", "type"),
}))

SELECTOR = obj({"matchLabels": STRING_MAP, "matchExpressions": array(obj(
    {"key": STRING, "operator": STRING, "values": array(STRING)}, "key", "operator"))})

SERVICE_MONITOR = resource("monitoring.coreos.com/v1", "ServiceMonitor", obj({
    "selector": SELECTOR,
    "namespaceSelector": obj({"any": {"type": "boolean"}, "matchNames": array(STRING)}),
    "jobLabel": STRING,
    "endpoints": array(obj({
        "port": STRING, "path": STRING, "interval": DURATION, "scrapeTimeout": DURATION,
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "honorLabels": {"type": "boolean"},
    })),
}, "selector"))

PROMETHEUS_RULE = resource("monitoring.coreos.com/v1", "PrometheusRule", obj({
    "groups": array(obj({
        "name": {"type": "string", "minLength": 1},
        "interval": DURATION,
        "rules": array(obj({
            "alert": STRING, "record": STRING,
            "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "for": DURATION, "keep_firing_for": DURATION,
            "labels": STRING_MAP, "annotations": STRING_MAP,
        }, "expr")),
    }, "name")),
}))

SCHEMAS: dict[tuple[str, str], Schema] = {
    (s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
    for s in (SCALED_OBJECT, TRIGGER_AUTHENTICATION, KAFKA_TOPIC, KAFKA_USER,
              SERVICE_MONITOR, PROMETHEUS_RULE)
}
