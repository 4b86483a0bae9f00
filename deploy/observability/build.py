"""The Grafana dashboards (one per service) and the Prometheus alert rules, written from one
table of queries so that a metric renamed in the services shows up here as a failing test
(tests/deploy/test_observability.py), not as an empty panel at night.

``python -m deploy.observability.build`` writes ``dashboards/<service>.json`` and
``alerts.yaml`` beside this file (``make docs``); a test fails when they are stale.

Metrics come from the runtime (``services/runtime/metrics.py``: handling, retries, dead
letters, transactions, outbox, consumer lag), FastStream's middleware (``schoolcard_kafka_*``,
label ``app_name`` = the service) and the services' own modules (``services/<svc>/metrics.py``:
wallet's sales, declines by reason, top-ups and fares; access's passages and denials;
notify's deliveries by channel; transit's rides and fares;
notify's refused codes). Readiness comes from kube-state-metrics and Prometheus' ``up``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from contracts.catalog import SERVICES, dead_letter_topic
from contracts.k8s import LAG_THRESHOLD, max_replicas

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
ALERTS = HERE / "alerts.yaml"
RATE = "5m"


@dataclass(frozen=True)
class Panel:
    title: str
    exprs: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    description: str = ""


def handled(service: str, type_: str) -> str:
    return (f'sum by (outcome) (rate(schoolcard_messages_handled_total{{service="{service}", '
            f'type="schoolcard.{type_}"}}[{RATE}]))')


def published(service: str, topic: str) -> str:
    return (f'sum(rate(schoolcard_outbox_published_total{{service="{service}", '
            f'topic="{topic}"}}[{RATE}]))')


def red_panels(s: str) -> list[Panel]:
    sel = f'service="{s}"'
    return [
        Panel("Messages handled per second, by outcome",
              ((f"sum by (outcome) (rate(schoolcard_messages_handled_total{{{sel}}}[{RATE}]))",
                "{{outcome}}"),), "ops",
              "Rate: ok, duplicate (absorbed by the inbox), rejected (a domain refusal, "
              "answered), ignored, failed."),
        Panel("Messages handled per second, by type",
              ((f"sum by (type) (rate(schoolcard_messages_handled_total{{{sel}}}[{RATE}]))",
                "{{type}}"),), "ops"),
        Panel("Errors: failed handling, refusals and retries per second",
              ((f'sum(rate(schoolcard_messages_handled_total{{{sel}, outcome="failed"}}'
                f"[{RATE}]))", "failed"),
               (f"sum by (code) (rate(schoolcard_refusals_total{{{sel}}}[{RATE}]))",
                "refused {{code}}"),
               (f"sum by (kind) (rate(schoolcard_retries_total{{{sel}}}[{RATE}]))",
                "retry {{kind}}")), "ops",
              "retry infrastructure climbing = MongoDB or Kafka outage: the partition waits."),
        Panel("Handling time (p50, p95, p99)",
              tuple((f"histogram_quantile({q}, sum by (le) "
                     f"(rate(schoolcard_handler_seconds_bucket{{{sel}}}[{RATE}])))", f"p{p}")
                    for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))), "s"),
        Panel("MongoDB unit of work (p99) and batch size (mean)",
              ((f"histogram_quantile(0.99, sum by (le) "
                f"(rate(schoolcard_transaction_seconds_bucket{{{sel}}}[{RATE}])))",
                "transaction p99 (s)"),
               (f"sum(rate(schoolcard_batch_messages_sum{{{sel}}}[{RATE}])) / "
                f"sum(rate(schoolcard_batch_messages_count{{{sel}}}[{RATE}]))",
                "messages per transaction")), "short"),
        Panel("Kafka: received and published per second",
              ((f'sum(rate(schoolcard_kafka_received_messages_total{{app_name="{s}"}}'
                f"[{RATE}]))", "received"),
               (f"sum by (destination) (rate(schoolcard_kafka_published_messages_total"
                f'{{app_name="{s}"}}[{RATE}]))', "published {{destination}}")), "ops"),
        Panel("Consumer lag by topic (records)",
              ((f"sum by (topic) (schoolcard_consumer_lag{{{sel}}})", "{{topic}}"),),
              "short",
              f"Records the group has not committed yet. KEDA adds a replica per "
              f"{LAG_THRESHOLD[s]} records, up to {max_replicas(s)} (the partitions)."),
        Panel(f"Dead letters per second ({dead_letter_topic(s)}), by code",
              ((f"sum by (code) (rate(schoolcard_dead_letters_total{{{sel}}}[{RATE}]))",
                "{{code}}"),), "ops",
              f"schoolcard dlq list {s}; replay after the fix (deploy/README.md)."),
        Panel("Outbox: backlog (records) and age of the oldest (s)",
              ((f"sum(schoolcard_outbox_backlog{{{sel}}})", "backlog"),
               (f"max(schoolcard_outbox_lag_seconds{{{sel}}})", "oldest (s)")), "short"),
        Panel("Outbox: published, failures and parked per second",
              ((f"sum by (topic) (rate(schoolcard_outbox_published_total{{{sel}}}[{RATE}]))",
                "published {{topic}}"),
               (f"sum by (reason) (rate(schoolcard_outbox_failures_total{{{sel}}}[{RATE}]))",
                "failure {{reason}}"),
               (f"sum by (reason) (rate(schoolcard_outbox_parked_total{{{sel}}}[{RATE}]))",
                "parked {{reason}}")), "ops"),
        Panel("Replicas ready / wanted",
              ((f'sum(kube_deployment_status_replicas_ready{{deployment="schoolcard-{s}"}})',
                "ready"),
               (f'sum(kube_deployment_spec_replicas{{deployment="schoolcard-{s}"}})',
                "wanted")), "short"),
    ]


DOMAIN: dict[str, list[Panel]] = {
    "auth": [
        Panel("Cabinet commands per second, by outcome",
              (("sum by (outcome) (rate(schoolcard_messages_handled_total"
                f'{{service="auth", type=~"schoolcard.auth.*"}}[{RATE}]))', "{{outcome}}"),),
              "ops"),
        Panel("Logins and registrations per second",
              ((handled("auth", "auth.Login"), "login {{outcome}}"),
               (handled("auth", "auth.StartRegistration"), "registration {{outcome}}")),
              "ops"),
        Panel("One-time codes asked of notify per second",
              ((published("auth", "notify.otp-requests.v1"), "codes"),), "ops"),
    ],
    "wallet": [
        Panel("Canteen sales per second, by outcome",
              ((handled("wallet", "integrations.CanteenSaleRequested"), "{{outcome}}"),),
              "ops", "Approve/decline answers go to the tills on wallet.sale-decisions.v1."),
        Panel("Top-ups per second, by outcome",
              ((handled("wallet", "integrations.TopUpReceived"), "{{outcome}}"),), "ops"),
        Panel("Fares debited per second, by outcome",
              ((handled("wallet", "transit.FareAssessed"), "{{outcome}}"),), "ops"),
        Panel("Sale decisions and account events published per second",
              ((published("wallet", "wallet.sale-decisions.v1"), "sale decisions"),
               (published("wallet", "wallet.events.v1"), "account events")), "ops"),
        Panel("Declines per second, by what was declined and why",
              (("sum by (what, reason) (rate(schoolcard_wallet_declines_total"
                f"[{RATE}]))", "{{what}} {{reason}}"),), "ops",
              "Each committed decline counted once (a retried sale's recorded answer is not)."),
        Panel("Money per second (roubles): sales, top-ups, fares",
              ((f"sum(rate(schoolcard_wallet_sales_kopecks_total[{RATE}])) / 100", "sales"),
               (f"sum(rate(schoolcard_wallet_top_up_kopecks_total[{RATE}])) / 100",
                "top-ups"),
               (f"sum(rate(schoolcard_wallet_fare_kopecks_total[{RATE}])) / 100", "fares")),
              "short"),
    ],
    "access": [
        Panel("Turnstile taps (entries and exits) per second, by outcome",
              ((handled("access", "integrations.GateTapped"), "{{outcome}}"),), "ops"),
        Panel("Gate decisions and attendance events published per second",
              ((published("access", "access.gate-decisions.v1"), "gate decisions"),
               (published("access", "access.events.v1"), "attendance events")), "ops"),
        Panel("Entries, exits and gate denials per second",
              (("sum by (direction) (rate(schoolcard_access_passages_total"
                f"[{RATE}]))", "{{direction}}"),
               ("sum by (reason) (rate(schoolcard_access_gate_denials_total"
                f"[{RATE}]))", "denied {{reason}}")), "ops"),
    ],
    "transit": [
        Panel("Rides per second, by fare explanation",
              (("sum by (explanation) (rate(schoolcard_transit_rides_total"
                f"[{RATE}]))", "{{explanation}}"),), "ops"),
        Panel("Fares assessed and refunded (roubles per second)",
              ((f"sum(rate(schoolcard_transit_assessed_kopecks_total[{RATE}])) / 100",
                "assessed"),
               (f"sum(rate(schoolcard_transit_refunded_kopecks_total[{RATE}])) / 100",
                "refunded")), "short"),
        Panel("Late taps repriced, deny-list changes, concession reminders per second",
              ((f"sum(rate(schoolcard_transit_corrections_total[{RATE}]))", "repriced"),
               (f"sum by (state) (rate(schoolcard_transit_deny_list_changes_total[{RATE}]))",
                "deny-list {{state}}"),
               (f"sum(rate(schoolcard_transit_concession_reminders_total[{RATE}]))",
                "reminders")), "ops"),
    ],
    "notify": [
        Panel("Events turned into notifications per second, by type",
              (("sum by (type) (rate(schoolcard_messages_handled_total"
                f'{{service="notify", outcome="ok"}}[{RATE}]))', "{{type}}"),), "ops"),
        Panel("Notifications per second, by channel and outcome",
              (("sum by (channel, status) (rate(schoolcard_notify_deliveries_total"
                f"[{RATE}]))", "{{channel}} {{status}}"),
               (f"sum(rate(schoolcard_notify_in_app_messages_total[{RATE}]))", "in-app")),
              "ops"),
        Panel("One-time codes not sent per second, by reason",
              (("sum by (reason) (rate(schoolcard_notify_codes_refused_total"
                f"[{RATE}]))", "{{reason}}"),), "ops"),
    ],
}


def dashboard(service: str) -> dict[str, object]:
    panels = []
    rows = [("Requests, errors, duration (RED), lag, dead letters, outbox", red_panels(service)),
            ("Domain", DOMAIN[service])]
    y, pid = 0, 1
    for row_title, row_panels in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid, y = pid + 1, y + 1
        for i, p in enumerate(row_panels):
            panels.append({
                "id": pid, "type": "timeseries", "title": p.title, "description": p.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "targets": [{"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
                            for n, (expr, legend) in enumerate(p.exprs)],
            })
            pid += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    return {
        "uid": f"schoolcard-{service}", "title": f"SchoolCard / {service}",
        "tags": ["schoolcard", service], "timezone": "browser", "schemaVersion": 39,
        "version": 1, "editable": False, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "annotations": {"list": []},
        "panels": panels,
    }


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    runbook: str


def alerts(service: str) -> list[Alert]:
    sel = f'service="{service}"'
    deployment = f"schoolcard-{service}"
    most = LAG_THRESHOLD[service] * max_replicas(service)
    book = "deploy/README.md"
    return [
        Alert("SchoolcardConsumerLagHigh",
              f"sum(schoolcard_consumer_lag{{{sel}}}) > {most}", "10m", "warning",
              f"{service} is {{{{ $value }}}} records behind: more than {max_replicas(service)} "
              f"replicas (its partitions) absorb at {LAG_THRESHOLD[service]} each.",
              f"{book}#scale-a-service"),
        Alert("SchoolcardConsumerStalled",
              f"sum(schoolcard_consumer_lag{{{sel}}}) > 0 and "
              f"sum(rate(schoolcard_messages_handled_total{{{sel}}}[10m])) == 0", "15m",
              "critical", f"{service} has lag but handled nothing for 15 minutes.",
              f"{book}#restore-after-a-mongodb-failover"),
        Alert("SchoolcardDeadLetters",
              f"sum(increase(schoolcard_dead_letters_total{{{sel}}}[15m])) > 0", "0m", "warning",
              f"{service} dead-lettered {{{{ $value }}}} messages in 15 minutes "
              f"({dead_letter_topic(service)}).", f"{book}#replay-a-dead-letter-topic"),
        Alert("SchoolcardDeadLettersGrowing",
              f"sum(rate(schoolcard_dead_letters_total{{{sel}}}[{RATE}])) > 1", "10m",
              "critical", f"{service} dead-letters more than one message a second.",
              f"{book}#replay-a-dead-letter-topic"),
        Alert("SchoolcardOutboxBacklog",
              f"max(schoolcard_outbox_lag_seconds{{{sel}}}) > 60 or "
              f"sum(schoolcard_outbox_backlog{{{sel}}}) > 10000", "5m", "critical",
              f"{service} has committed events not published for over a minute "
              "(the broker refuses them, or the relay is stuck).", f"{book}#outbox-backlog"),
        Alert("SchoolcardOutboxFailures",
              f'sum(rate(schoolcard_outbox_failures_total{{{sel}, reason!="refused"}}'
              f"[{RATE}])) > 0", "10m", "warning",
              f"{service}'s outbox relay fails or parks records.", f"{book}#outbox-backlog"),
        Alert("SchoolcardInfrastructureRetries",
              f'sum(rate(schoolcard_retries_total{{{sel}, kind="infrastructure"}}[{RATE}])) > 0',
              "5m", "critical", f"{service} retries because MongoDB or Kafka does not answer.",
              f"{book}#restore-after-a-mongodb-failover"),
        Alert("SchoolcardNotReady",
              f'sum(kube_deployment_status_replicas_ready{{deployment="{deployment}"}}) < '
              f'sum(kube_deployment_spec_replicas{{deployment="{deployment}"}})', "10m",
              "warning", f"Replicas of {service} are not ready (/readyz: Kafka or MongoDB "
              "does not answer it).", f"{book}#health"),
        Alert("SchoolcardDown",
              f'sum(up{{service="{deployment}"}}) == 0 or absent(up{{service="{deployment}"}})',
              "5m", "critical", f"No replica of {service} answers /metrics.",
              f"{book}#health"),
    ]


def alerts_yaml() -> str:
    """A PrometheusRule, one group per service; each value is a JSON scalar (valid YAML)."""
    lines = ["# SchoolCard alert rules: generated by `python -m deploy.observability.build` "
             "(make docs); do not edit.",
             "apiVersion: monitoring.coreos.com/v1", "kind: PrometheusRule", "metadata:",
             "  name: schoolcard", "  labels: {app.kubernetes.io/part-of: schoolcard}",
             "spec:", "  groups:"]
    for service in SERVICES:
        lines += [f"    - name: schoolcard-{service}", "      rules:"]
        for a in alerts(service):
            lines += [f"        - alert: {a.name}", f"          expr: {json.dumps(a.expr)}",
                      f"          for: {a.for_}",
                      f"          labels: {{severity: {a.severity}, service: {service}}}",
                      "          annotations:",
                      f"            summary: {json.dumps(a.summary)}",
                      f"            runbook: {json.dumps(a.runbook)}"]
    return "\n".join(lines) + "\n"


def dashboard_json(service: str) -> str:
    return json.dumps(dashboard(service), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    DASHBOARDS.mkdir(exist_ok=True)
    for service in SERVICES:
        (DASHBOARDS / f"{service}.json").write_text(dashboard_json(service))
    ALERTS.write_text(alerts_yaml())
    sys.stdout.write("deploy/observability/dashboards/*.json and alerts.yaml regenerated\n")


if __name__ == "__main__":
    main()
