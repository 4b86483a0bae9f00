"""Each service's domain counters map its committed events to Prometheus counters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from contracts import access, notify, transit, wallet
from services.access import metrics as access_metrics
from services.notify import metrics as notify_metrics
from services.transit import metrics as transit_metrics
from services.wallet import metrics as wallet_metrics

pytestmark = pytest.mark.unit

AT = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_wallet_counts_declines_by_what_and_reason_and_fares_in_kopecks() -> None:
    before = (value("schoolcard_wallet_declines_total", what="fare", reason="card_blocked"),
              value("schoolcard_wallet_fare_kopecks_total"))
    wallet_metrics.observe([
        wallet.FareDeclined(contract="40012345", ride_id="r-1", amount=35_00,
                            reason=wallet.DeclineReason.CARD_BLOCKED, declined_at=AT),
        wallet.FareDebited(contract="40012345", ride_id="r-2", amount=35_00,
                           balances=wallet.Balances(canteen=0, transit=0, general=0,
                                                    bonus_points=0),
                           debited_at=AT),
        wallet.TopUpRejected(contract="40012345", payment_id="p-1", amount=10_00,
                             reason="account_closed", rejected_at=AT)])
    assert (value("schoolcard_wallet_declines_total", what="fare", reason="card_blocked"),
            value("schoolcard_wallet_fare_kopecks_total")) == (before[0] + 1, before[1] + 35_00)


def test_access_counts_entries_exits_and_denials_by_reason_but_not_opened_gates() -> None:
    names = ("schoolcard_access_passages_total", "schoolcard_access_gate_denials_total")
    before = (value(names[0], direction="entry"), value(names[1], reason="card_blocked"))
    common = {"contract": "40012345", "school_id": "izh-school-25", "gate_id": "g-1",
              "at": AT, "local_date": AT.date().isoformat()}
    access_metrics.observe([
        access.StudentEntered(tap_id="t-1", **common),
        access.GateDecision(tap_id="t-2", gate_id="g-1", card_uid="04A1B2C3D4E5F6",
                            allowed=False, reason=access.DenyReason.CARD_BLOCKED,
                            decided_at=AT),
        access.GateDecision(tap_id="t-3", gate_id="g-1", card_uid="04A1B2C3D4E5F6",
                            allowed=True, decided_at=AT)])
    assert (value(names[0], direction="entry"), value(names[1], reason="card_blocked")) == (
        before[0] + 1, before[1] + 1)


def test_notify_counts_deliveries_by_channel_and_status() -> None:
    before = value("schoolcard_notify_deliveries_total", channel="sms", status="failed")
    notify_metrics.observe([notify.NotificationDelivered(
        notification_id="n-1", account_id="acc_7f3a9c2e1b4d", channel=notify.Channel.SMS,
        kind="top_up", status="failed", attempts=1, at=AT)])
    assert value("schoolcard_notify_deliveries_total", channel="sms",
                 status="failed") == before + 1


def test_transit_counts_rides_by_explanation_refunds_and_deny_list_changes() -> None:
    names = ("schoolcard_transit_rides_total", "schoolcard_transit_refunded_kopecks_total",
             "schoolcard_transit_deny_list_changes_total")
    explanation = next(iter(transit.FareExplanation))
    before = (value(names[0], explanation=explanation.value), value(names[1]),
              value(names[2], state="allowed"))
    transit_metrics.observe([
        transit.RideRecorded(ride_id="r-1", contract="40012345", card_uid="04A1B2C3D4E5F6",
                             route="29", mode="bus", stop_id="s-1", tapped_at=AT, fare=35_00,
                             explanation=explanation),
        transit.FareCorrected(correction_id="c-1", ride_id="r-1", contract="40012345",
                              refund=10_00, new_fare=25_00, explanation=explanation,
                              corrected_at=AT),
        transit.DenyListEntry(card_uid="04A1B2C3D4E5F6", denied=False, updated_at=AT)])
    assert (value(names[0], explanation=explanation.value), value(names[1]),
            value(names[2], state="allowed")) == (before[0] + 1, before[1] + 10_00,
                                                   before[2] + 1)
