"""The dashboards and alert rules name only metrics the services export (read from the
Prometheus registry once the services' metric modules are imported), cover what an SRE
watches per service, and are what the generator writes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import pytest
import yaml
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, CollectorRegistry

import services.access.metrics
import services.notify.handlers
import services.notify.metrics
import services.runtime.metrics
import services.transit.metrics
import services.wallet.metrics
from contracts.catalog import SERVICES
from deploy.observability import build

pytestmark = pytest.mark.unit

SERVICE_METRIC_MODULES = (services.runtime.metrics, services.transit.metrics,
                          services.notify.handlers, services.notify.metrics,
                          services.wallet.metrics, services.access.metrics)
EXTERNAL = {
    "up": "Prometheus, per scraped target",
    "kube_deployment_status_replicas_ready": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
}
"""Series that come from the monitoring stack, not from the services."""
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",)}


def series(registries: Iterable[CollectorRegistry]) -> set[str]:
    names = set()
    for registry in registries:
        for family in registry.collect():
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def exported() -> set[str]:
    """Every series name the services can export: the runtime's and services' own metrics in
    the default registry, and FastStream's under the prefix the broker gives it."""
    assert SERVICE_METRIC_MODULES
    faststream = CollectorRegistry()
    KafkaPrometheusMiddleware(registry=faststream, app_name="any",
                              metrics_prefix="schoolcard_kafka")
    return series((REGISTRY, faststream))


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression reads: names followed by a selector or a range, and
    every ``schoolcard_*`` name wherever it stands (label values stripped first)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", bare))
    names |= set(re.findall(r"\bschoolcard_[a-z0-9_]+", bare))
    return names


def unknown(exprs: Iterable[str], known: set[str]) -> set[str]:
    return {n for e in exprs for n in metric_names(e) if n not in known and n not in EXTERNAL}


def dashboard_exprs(service: str) -> list[str]:
    board = json.loads((build.DASHBOARDS / f"{service}.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, object]]:
    rule = yaml.safe_load(build.ALERTS.read_text())
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


@pytest.mark.parametrize("service", SERVICES)
def test_each_dashboard_names_only_exported_metrics(service: str) -> None:
    exprs = dashboard_exprs(service)
    assert exprs
    assert unknown(exprs, exported()) == set()


def test_every_alert_names_only_exported_metrics() -> None:
    exprs = [str(r["expr"]) for r in alert_rules()]
    assert unknown(exprs, exported()) == set()


def test_a_metric_the_services_do_not_export_is_reported() -> None:
    known = exported()
    assert "schoolcard_consumer_lag" in known
    assert "schoolcard_kafka_received_messages_total" in known
    assert "schoolcard_handler_seconds_bucket" in known
    exprs = ['sum(rate(schoolcard_wallet_salez_total{service="wallet"}[5m]))',
             'sum by (topic) (schoolcard_consumer_lags{service="x"})',
             "histogram_quantile(0.9, rate(schoolcard_handler_second_bucket[5m]))",
             'kube_pod_info{pod="x"}']
    assert unknown(exprs, known) == {"schoolcard_wallet_salez_total", "schoolcard_consumer_lags",
                                     "schoolcard_handler_second_bucket", "kube_pod_info"}


@pytest.mark.parametrize("service", SERVICES)
def test_each_dashboard_shows_red_lag_dead_letters_and_outbox(service: str) -> None:
    named = {n for e in dashboard_exprs(service) for n in metric_names(e)}
    assert {"schoolcard_messages_handled_total", "schoolcard_handler_seconds_bucket",
            "schoolcard_consumer_lag", "schoolcard_dead_letters_total",
            "schoolcard_outbox_backlog", "schoolcard_outbox_lag_seconds",
            "schoolcard_outbox_failures_total"} <= named
    assert all(f'service="{service}"' in e or f"schoolcard_{service}_" in e
               or f'"{service}"' in e or "schoolcard-" in e
               for e in dashboard_exprs(service))


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_alerted_on_lag_dead_letters_outbox_and_readiness(service: str) -> None:
    rules = [r for r in alert_rules() if r["labels"]["service"] == service]  # type: ignore[index]
    read = {n for r in rules for n in metric_names(str(r["expr"]))}
    assert {"schoolcard_consumer_lag", "schoolcard_dead_letters_total",
            "schoolcard_outbox_lag_seconds", "schoolcard_outbox_backlog",
            "kube_deployment_status_replicas_ready", "up"} <= read
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}  # type: ignore[index]
        assert str(r["annotations"]["runbook"]).startswith("deploy/README.md#")  # type: ignore[index]


def test_dashboards_and_alerts_are_what_the_generator_writes() -> None:
    """``make docs`` regenerates them; run it when this fails."""
    for service in SERVICES:
        assert (build.DASHBOARDS / f"{service}.json").read_text() == build.dashboard_json(service)
    assert build.ALERTS.read_text() == build.alerts_yaml()


def test_every_runbook_link_of_an_alert_names_a_section_of_the_runbook() -> None:
    readme = (build.HERE.parent / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in readme.splitlines() if line.startswith("## ")}
    links = {str(r["annotations"]["runbook"]).split("#")[1] for r in alert_rules()}  # type: ignore[index]
    assert links and links <= anchors, links - anchors
