"""Prometheus metrics of the runtime (FastStream's middleware adds per-topic consume and
publish metrics to the same registry)."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

registry = REGISTRY

HANDLED = Counter("schoolcard_messages_handled_total", "Messages handled, by outcome",
                  ["service", "type", "outcome"])
DEAD_LETTERED = Counter("schoolcard_dead_letters_total", "Messages sent to the dead-letter "
                        "topic, by reason code", ["service", "code"])
REFUSALS = Counter("schoolcard_refusals_total", "Requests answered with an error and events "
                   "dead-lettered because a token or a domain rule refused them, by code",
                   ["service", "code"])
RETRIES = Counter("schoolcard_retries_total", "Handler retries after a transient fault",
                  ["service", "kind"])
HANDLER_SECONDS = Histogram("schoolcard_handler_seconds", "Time to handle one message",
                            ["service", "type"],
                            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
TRANSACTION_SECONDS = Histogram("schoolcard_transaction_seconds", "MongoDB unit of work time",
                                ["service"],
                                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
BATCH_SIZE = Histogram("schoolcard_batch_messages", "Messages applied in one batch transaction",
                       ["service"], buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500))
OUTBOX_PUBLISHED = Counter("schoolcard_outbox_published_total", "Outbox records published",
                           ["service", "topic"])
OUTBOX_LAG = Gauge("schoolcard_outbox_lag_seconds", "Age of the oldest outbox record the "
                   "relay has still to publish, after each pass (whether it published, failed "
                   "or found nothing)", ["service"])
OUTBOX_BACKLOG = Gauge("schoolcard_outbox_backlog", "Outbox records the relay has still to "
                       "publish, after each pass", ["service"])
OUTBOX_FAILURES = Counter("schoolcard_outbox_failures_total", "Outbox publishing failures "
                          "(reason: refused - a record the broker refused while it answered, "
                          "retried later; too_large, invalid_topic, not_authorized, "
                          "policy_violation - a record parked at once; broker_unavailable - a "
                          "pass stopped by an outage; error - a pass that failed otherwise, "
                          "e.g. the database)", ["service", "reason"])
OUTBOX_PARKED = Counter("schoolcard_outbox_parked_total", "Outbox records moved aside because "
                        "the broker would not take them (reason: too_large, invalid_topic, "
                        "not_authorized, policy_violation, unpublishable)", ["service", "reason"])
CONSUMER_LAG = Gauge("schoolcard_consumer_lag", "Records of a partition this instance "
                     "consumes that its consumer group has not committed yet",
                     ["service", "topic", "partition"])
