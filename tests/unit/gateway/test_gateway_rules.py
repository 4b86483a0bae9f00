"""The gateway's own rules without a broker: error codes to HTTP statuses, the per-address
token bucket, which address is the client's, and the settings that fail at start."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from services.gateway.limits import RateLimiter
from services.gateway.problems import ProblemError, response, status_for
from services.gateway.routes import client_address
from services.gateway.settings import GatewayInfra, Settings
from services.runtime.tokens import generate_keypair

pytestmark = pytest.mark.unit

_, PUBLIC_KEY = generate_keypair()


@pytest.mark.parametrize(("code", "status"), [
    ("unauthenticated", 401), ("invalid_token", 401), ("token_expired", 401),
    ("invalid_credentials", 401), ("second_factor_required", 401),
    ("forbidden", 403), ("password_change_required", 403), ("wrong_audience", 403),
    ("unknown_contract", 404), ("unknown_student", 404), ("account_not_found", 404),
    ("idempotency_conflict", 409), ("operation_id_conflict", 409),
    ("login_rate_limited", 429), ("code_rate_limited", 429), ("login_delayed", 429),
    ("insufficient_funds", 422), ("consent_required", 422), ("invalid_filter", 422),
    ("reply_timeout", 504), ("gateway_stopping", 503),
])
def test_a_service_error_code_becomes_its_http_status(code: str, status: int) -> None:
    assert status_for(code) == status


def test_a_throttle_refusal_carries_the_services_wait_as_retry_after() -> None:
    problem = ProblemError("login_delayed", "Too many failed logins. Retry after 42 s.")
    answer = response(problem)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "42"
    assert answer.media_type == "application/problem+json"
    assert b'"type":"urn:schoolcard:problem:login_delayed"' in answer.body


def test_the_bucket_allows_a_burst_then_the_sustained_rate_per_address() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=6, burst=2, clock=lambda: now[0])
    assert limiter.take("login", "a") == 0 and limiter.take("login", "a") == 0
    wait = limiter.take("login", "a")
    assert wait == pytest.approx(10.0)  # one token every 10 s
    assert limiter.take("login", "b") == 0  # another address, its own bucket
    assert limiter.take("registration", "a") == 0  # another kind, its own bucket
    now[0] = 10.0
    assert limiter.take("login", "a") == 0
    assert limiter.take("login", "a") > 0


def test_the_bucket_table_stays_bounded_under_a_flood_of_addresses() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, max_clients=100)
    for n in range(1_000):
        limiter.take("login", f"10.0.{n // 256}.{n % 256}")
    assert len(limiter.buckets) == 100


TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_the_client_address_is_the_peer_unless_the_peer_is_a_trusted_proxy() -> None:
    assert client_address("203.0.113.5", "1.2.3.4", TRUSTED) == "203.0.113.5"
    assert client_address("127.0.0.1", "203.0.113.5", TRUSTED) == "203.0.113.5"
    # what the client wrote itself sits left of what the proxies appended: never believed
    assert client_address("10.1.1.1", "6.6.6.6, 203.0.113.5, 10.2.2.2", TRUSTED) == (
        "203.0.113.5")
    assert client_address("127.0.0.1", "not-an-address", TRUSTED) == "127.0.0.1"
    assert client_address("127.0.0.1", "", TRUSTED) == "127.0.0.1"


def test_settings_refuse_an_instance_id_that_cannot_name_a_reply_topic() -> None:
    infra = GatewayInfra(kafka_bootstrap="127.0.0.1:9092", auth_public_key=PUBLIC_KEY)
    assert Settings(infra=infra, instance_id="gw-1").reply_topic == "apps.replies.gw-gw-1.v1"
    with pytest.raises(ValidationError):
        Settings(infra=infra, instance_id="Gateway_1")
    with pytest.raises(ValidationError):
        Settings(infra=infra, trusted_proxies=["not-a-network"])


def test_the_apps_principal_the_gateway_runs_as_may_do_all_it_does_and_no_more() -> None:
    from contracts import acl
    from contracts.catalog import TOPICS
    from services.gateway.kafka import DELIVERIES

    table = acl.table()
    apps = acl.principal("gateway")
    reply_topic = Settings(infra=GatewayInfra(kafka_bootstrap="k:9092", auth_public_key=PUBLIC_KEY),
                           instance_id="gw-1").reply_topic
    commands = [t.name for t in TOPICS if t.producer == "apps"]
    assert {"auth.commands.v1", "wallet.commands.v1", "access.commands.v1",
            "transit.commands.v1", "notify.commands.v1"} == set(commands)
    for name in commands:
        assert acl.allowed(table, apps, "Write", "topic", name)
    for operation in ("Create", "Read"):
        assert acl.allowed(table, apps, operation, "topic", reply_topic)
    assert acl.allowed(table, apps, "Read", "topic", DELIVERIES)
    assert not acl.allowed(table, apps, "Read", "topic", "notify.otp-requests.v1")
    assert not acl.allowed(table, apps, "Write", "topic", "integrations.topups.v1")
    partner_reply_topic = "apps.replies.partner-1.v1"
    assert not acl.allowed(table, apps, "Read", "topic", partner_reply_topic)
