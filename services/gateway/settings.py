"""gateway's settings (env prefix ``GATEWAY_``, plus the shared ``SCHOOLCARD_*`` it needs: the
broker and its security, auth's public key, logging); no other gateway module reads the
environment. The gateway keeps no database, so it asks for no MongoDB URI."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import uuid

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.catalog import app
from services.runtime.settings import AuthKeysSettings, KafkaSecuritySettings

INSTANCE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,44}$")
"""Fits the reply topic ``apps.replies.gw-<instance id>.v1`` into the catalog's client-id
pattern (2-48 lower-case letters, digits and hyphens)."""


class GatewayInfra(KafkaSecuritySettings, AuthKeysSettings):
    """The shared ``SCHOOLCARD_*`` values the gateway reads. The public keys
    (``SCHOOLCARD_AUTH_PUBLIC_KEYS``): the gateway verifies access tokens before it asks a
    service (401 without a round trip) and reads the token's account and children."""

    model_config = SettingsConfigDict(env_prefix="SCHOOLCARD_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port].")
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0, le=60_000, description="As for "
                                         "the services (10 on the development broker).")
    log_json: bool = True
    log_level: str = "INFO"


def default_instance_id() -> str:
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")[:24] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    infra: GatewayInfra = Field(default_factory=GatewayInfra)  # type: ignore[arg-type]
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP API listens on.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP API, "
                           "/metrics, /healthz and /readyz (0 picks a free port).")
    instance_id: str = Field(default_factory=default_instance_id, description="Unique per "
                             "running instance: names its own reply topic "
                             "apps.replies.gw-<instance id>.v1 (lower-case letters, digits, "
                             "hyphens; at most 45).")
    request_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Longest wait "
                                     "for a service's reply; then 504.")
    reply_topic_settle_s: float = Field(
        default=5.0, ge=0, le=60, description="After creating its reply topic the instance "
        "reports not ready this long (the services look a reply topic they have not seen up "
        "on the broker at once: runtime.broker.ReplyTopics; a broker slow to spread new "
        "topics' metadata may need a second or two).")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or CIDR blocks of the reverse proxies "
        "whose X-Forwarded-For is believed (JSON list). Empty: the client's address is the "
        "connection's peer.")
    rate_limit_per_minute: float = Field(default=10.0, gt=0, description="Sustained calls per "
                                         "minute and client address to each of registration, "
                                         "code resend, login and password reset.")
    rate_limit_burst: int = Field(default=10, ge=1, description="Calls a client address may "
                                  "make at once before the sustained rate applies.")
    rate_limit_clients: int = Field(default=100_000, ge=100, description="Client addresses "
                                    "whose buckets are kept (least recently seen dropped "
                                    "first): memory stays bounded under a flood.")
    sse_keepalive_s: float = Field(default=15.0, gt=0, description="Comment line sent on an "
                                   "idle event stream so proxies keep it open.")
    sse_queue: int = Field(default=256, ge=1, description="Events buffered per stream; a "
                           "client that falls further behind is told to reload and dropped.")
    web_idle_timeout_s: float = Field(default=1200.0, gt=0, le=12 * 3600, description="The "
                                      "web cabinet logs out after this long without user "
                                      "activity (the seed's 20 minutes).")
    shutdown_grace_s: float = Field(default=10.0, ge=0, description="Longest wait for "
                                    "responses in progress at stop.")

    @field_validator("instance_id")
    @classmethod
    def _instance_id(cls, value: str) -> str:
        if not INSTANCE_ID.fullmatch(value):
            raise ValueError("GATEWAY_INSTANCE_ID must be 1-45 lower-case letters, digits and "
                             "hyphens, starting with a letter or digit")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # raises ValueError on a bad entry
        return value

    @property
    def reply_topic(self) -> str:
        """Inside the gateway app's own prefix (``catalog.app("gateway")``), which only the
        gateway's Kafka user may create and read."""
        return app("gateway").reply_topic(self.instance_id)
