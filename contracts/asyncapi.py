"""Generate the AsyncAPI 3.0 document of the whole platform from the contracts and the topic
catalog (offline, deterministic): ``python -m contracts.asyncapi > docs/asyncapi.json``.

Every topic of the catalog becomes a channel with its key, partitions, retention or compaction;
every message type a component with its JSON Schema (field descriptions and examples included)
and the CloudEvents headers of the envelope; producers get ``send`` operations and consumers
``receive`` operations. The message types an integrator must sign (``Topic.signed``) carry
``SignedEnvelopeHeaders`` and ``x-signed-by``; how to sign is ``SIGNING`` below.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic.json_schema import models_json_schema

from contracts import signing
from contracts.catalog import SERVICES, TOPICS, Topic
from contracts.envelope import Envelope

VERSION = "1.0.0"

ENVELOPE_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 Kafka binary mode: envelope attributes as headers.",
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
                 "ce_correlationid"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": Envelope.model_fields["id"].description},
        "ce_type": {"type": "string", "description": Envelope.model_fields["type"].description},
        "ce_source": {"type": "string",
                      "description": Envelope.model_fields["source"].description},
        "ce_time": {"type": "string", "format": "date-time",
                    "description": Envelope.model_fields["time"].description},
        "ce_subject": {"type": "string",
                       "description": Envelope.model_fields["subject"].description},
        "ce_schemaversion": {"type": "string", "description": "Major schema version."},
        "ce_correlationid": {"type": "string",
                             "description": Envelope.model_fields["correlation_id"].description},
        "ce_causationid": {"type": "string",
                           "description": Envelope.model_fields["causation_id"].description},
        "ce_replyto": {"type": "string",
                       "description": Envelope.model_fields["reply_to"].description},
        "traceparent": {"type": "string", "description": "W3C trace context."},
        "authorization": {"type": "string", "description": "Bearer access token (commands "
                          "and queries from apps only)."},
        "content-type": {"type": "string", "const": "application/json"},
        signing.HEADER_SIGNER: {"type": "string", "description": "Key id of the integrator's "
                                "signature: required on the messages marked x-signed-by, "
                                "allowed (and ignored) on the others."},
        signing.HEADER_SIGNATURE: {"type": "string", "contentEncoding": "base64",
                                   "description": "The integrator's Ed25519 signature: see "
                                   "SignedEnvelopeHeaders."},
    },
}

SIGNING = (
    "Messages that create money, change auto top-up or change which card a balance is on "
    "(TopUpReceived, AutoTopUpCollectionFailed, CardIssued, CardReissued, VirtualCardIssued: "
    "x-signed-by on the message) must be signed by the integrator "
    f"that produces their topic. Header {signing.HEADER_SIGNER}: the key id, "
    "'<integrator id>' or '<integrator id>#<key name>' (e.g. integrator:payments#2026-09; "
    "several keys per integrator, so a key rotates by adding the new one, signing with it, then "
    f"removing the old one). Header {signing.HEADER_SIGNATURE}: standard base64 of the 64-byte "
    f"{signing.ALGORITHM} (RFC 8032) signature of the bytes "
    f"'{signing.CONTEXT.decode()}' LF <topic> LF <ce_type> LF <ce_id> LF <record value>, "
    "the value exactly as published (topic, ce_type and ce_id contain no LF). A record "
    "republished under another ce_id or topic no longer verifies. Each consuming service holds "
    "the integrators' public keys (SCHOOLCARD_INTEGRATOR_KEYS) and dead-letters with dlq_code "
    "unauthenticated, before applying anything, a record that is unsigned, signed with an "
    "unknown key or another integrator's key, or whose signature does not match."
)

SIGNED_HEADERS: dict[str, Any] = {
    "description": SIGNING,
    "allOf": [
        {"$ref": "#/components/schemas/EnvelopeHeaders"},
        {"type": "object", "required": [signing.HEADER_SIGNER, signing.HEADER_SIGNATURE]},
    ],
}

DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "The original headers plus the reason the message could not be processed.",
    "properties": {
        "dlq_code": {"type": "string", "description": "not_json | schema_violation | "
                     "missing_headers | unknown_type | unexpected_type | unsupported_version | "
                     "unauthenticated (an integrator's signature missing or wrong) | "
                     "reply_topic_not_allowed | processing_failed | a service's rejection "
                     "code"},
        "dlq_reason": {"type": "string", "description": "Human-readable reason (no payload "
                       "values)."},
        "dlq_source_topic": {"type": "string"},
        "dlq_source_partition": {"type": "string"},
        "dlq_source_offset": {"type": "string"},
        "dlq_consumer_group": {"type": "string"},
        "dlq_failed_at": {"type": "string", "format": "date-time"},
        "dlq_attempts": {"type": "string"},
        "dlq_masked": {"type": "string", "description": "Set when secret fields of the value "
                       "(x-secret: passwords, codes, tokens) were masked in this copy: their "
                       "dotted paths, comma-separated. Such a copy is not replayed."},
    },
}


def _channel_id(topic: Topic) -> str:
    return topic.name.replace(".", "_").replace("-", "_")


def _private(model: type[Any]) -> dict[str, str]:
    """Requests whose answers carry session secrets, and those answers: the requester's own
    reply topic only."""
    if getattr(model, "PRIVATE_REPLY", False):
        return {"x-reply-topic": "the requester's own apps.replies.<client-id>.v1 (the answer "
                                 "carries session secrets); naming apps.replies.v1 gets the "
                                 "request dead-lettered reply_topic_not_allowed"}
    if getattr(model, "PRIVATE", False):
        return {"x-reply-topic": "sent only to the requester's own apps.replies.<client-id>.v1"}
    return {}


CORRELATION_ID = {"$ref": "#/components/correlationIds/correlationId"}
CORRELATION_IDS = {"correlationId": {
    "location": "$message.header#/ce_correlationid",
    "description": "A request's ce_correlationid comes back on its reply (and on every message "
                   "of the flow it starts): match replies to requests by it."}}
SECURITY_SCHEMES = {
    "scramSha512": {"type": "scramSha512", "description": "SASL SCRAM-SHA-512 over TLS: one "
                    "Kafka user per service, per integrator and for apps; the ACLs "
                    "(deploy/kafka-acls.sh, KafkaUser resources) let each write only the "
                    "topics it produces and read only those it consumes."},
    "tls": {"type": "X509", "description": "TLS with the cluster's CA "
            "(SCHOOLCARD_KAFKA_SSL_CAFILE)."},
}


def _key_binding(model: type[Any]) -> dict[str, Any]:
    """The Kafka record key of a message, as its topic keys it."""
    keys = sorted({t.key for t in TOPICS if model in t.messages})
    return {"kafka": {"key": {"type": "string", "description": "Record key: " + " | ".join(keys)},
                      "bindingVersion": "0.5.0"}}


def _reply(topic: Topic) -> dict[str, Any]:
    """Commands and queries are answered on the topic their ce_replyto names."""
    if not any(m.KIND in ("command", "query") for m in topic.messages):
        return {}
    return {"reply": {
        "address": {"location": "$message.header#/ce_replyto",
                    "description": "apps.replies.v1, or the requester's own "
                                   "apps.replies.<client-id>.v1 (required for requests whose "
                                   "answer carries session secrets: x-reply-topic)."},
        "channel": {"$ref": "#/channels/apps_replies_v1"}}}


def build() -> dict[str, Any]:
    models = sorted({m for t in TOPICS for m in t.messages}, key=lambda m: m.TYPE)
    signers = {m.__name__: t.producer for t in TOPICS for m in t.signed}
    _, defs = models_json_schema([(m, "serialization") for m in models],
                                 ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    messages: dict[str, Any] = {
        m.__name__: {
            "name": m.TYPE,
            "title": m.__name__,
            "summary": (m.__doc__ or m.__name__).strip().split("\n\n")[0].replace("\n", " "),
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/" + (
                "SignedEnvelopeHeaders" if m.__name__ in signers else "EnvelopeHeaders")},
            "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
            "bindings": _key_binding(m),
            **({"correlationId": CORRELATION_ID}
               if m.KIND in ("command", "query", "reply") else {}),
            "x-kind": m.KIND,
            "x-schema-version": m.VERSION,
            **_private(m),
            **({"x-signed-by": signers[m.__name__]} if m.__name__ in signers else {}),
        }
        for m in models
    }
    messages["DeadLetter"] = {
        "name": "schoolcard.DeadLetter",
        "title": "DeadLetter",
        "summary": "The original record (bytes as received, secrets masked) that a service "
                   "could not process.",
        "contentType": "application/octet-stream",
        "headers": DEAD_LETTER_HEADERS,
        "payload": {"type": "string", "description": "Original record value, unchanged "
                    "except that the values of secret fields (x-secret) are replaced by "
                    "\"***\" (see the dlq_masked header)."},
    }
    schemas["EnvelopeHeaders"] = ENVELOPE_HEADERS
    schemas["SignedEnvelopeHeaders"] = SIGNED_HEADERS
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in TOPICS:
        cid = _channel_id(topic)
        names = [m.__name__ for m in topic.messages] or ["DeadLetter"]
        channels[cid] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {"kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {
                    "cleanup.policy": ["compact"] if topic.compacted else ["delete"],
                    **({"retention.ms": topic.retention_ms}
                       if topic.retention_ms and not topic.compacted else {}),
                },
                "bindingVersion": "0.5.0",
            }},
            "x-key": topic.key,
            "x-producer": topic.producer,
            "x-consumers": list(topic.consumers),
            "x-personal-data": topic.personal_data,
        }
        channel_ref = {"$ref": f"#/channels/{cid}"}
        msg_refs = [{"$ref": f"#/channels/{cid}/messages/{n}"} for n in names]
        for producer in topic.producer.split(", "):
            operations[f"{producer}_sends_{cid}"] = {
                "action": "send", "channel": channel_ref, "messages": msg_refs,
                "summary": f"{producer} publishes to {topic.name}"}
        for consumer in topic.consumers:
            operations[f"{consumer}_receives_{cid}"] = {
                "action": "receive", "channel": channel_ref, "messages": msg_refs,
                "summary": f"{consumer} consumes {topic.name}",
                **(_reply(topic) if consumer in SERVICES else {})}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "SchoolCard platform",
            "version": VERSION,
            "description": "Topics, messages and envelope of the SchoolCard services (auth, "
                           "wallet, access, transit, notify) and their integrators. Money is "
                           "integer kopecks; times are UTC (RFC 3339). Generated from "
                           "contracts/ — do not edit by hand.\n\nIntegrator signatures: "
                           + SIGNING,
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {"host": "kafka:9093", "protocol": "kafka-secure",
                           "description": "Apache Kafka (KRaft) over TLS with SASL "
                                          "SCRAM-SHA-512; set SCHOOLCARD_KAFKA_BOOTSTRAP and "
                                          "SCHOOLCARD_KAFKA_SECURITY_PROTOCOL=SASL_SSL.",
                           "security": [{"$ref": "#/components/securitySchemes/scramSha512"},
                                        {"$ref": "#/components/securitySchemes/tls"}]},
            "development": {"host": "127.0.0.1:9092", "protocol": "kafka",
                            "description": "Embedded Tansu broker started by `make up`."},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas,
                       "correlationIds": CORRELATION_IDS, "securitySchemes": SECURITY_SCHEMES},
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
