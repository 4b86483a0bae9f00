"""Settings: environment variables only, validated at start (a missing required value stops
the process with a clear message before it touches the broker or the database).

Shared infrastructure uses the ``SCHOOLCARD_`` prefix; each service adds its own prefix
(``WALLET_``, ``AUTH_``...) for its own values. No other module reads ``os.environ``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.tokens import public_keys


class InfraSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHOOLCARD_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port].")
    mongo_uri: str = Field(description="MongoDB URI (a replica set in production).")
    auth_public_keys: str = Field(default="", description="SCHOOLCARD_AUTH_PUBLIC_KEYS: PEM "
                                  "bundle of auth's Ed25519 public keys (one or more PUBLIC "
                                  "KEY blocks); a token verifies when its kid is the thumbprint "
                                  "of one of them. Two keys during a rotation (deploy/RUNBOOK.md)."
                                  " Required by services that authorise app commands.")
    auth_public_key: str = Field(default="", description="SCHOOLCARD_AUTH_PUBLIC_KEY: one PEM "
                                 "public key, the earlier name; joins SCHOOLCARD_AUTH_PUBLIC_KEYS.")
    provision_topics: bool = Field(default=True, description="Create missing catalog topics "
                                   "at start (off where SREs provision them).")
    topic_partitions: int | None = Field(default=None, ge=1, description="Override the "
                                         "catalog's partition counts (small dev brokers).")
    replication_factor: int = Field(default=1, ge=1)
    mongo_dialect: Literal["mongodb", "nx27017"] = Field(
        default="mongodb", description="Which server the stores' queries are written for "
        "(services/runtime/dialect.py): mongodb, or nx27017 for the dev server's query quirks "
        "(the local stack and the tests).")
    mongo_snapshot_reads: bool = Field(default=True, description="Run transactions with read "
                                       "concern 'snapshot' (MongoDB). The dev server nx-27017 "
                                       "mis-stores that option as a document: off there.")
    kafka_fetch_max_wait_ms: int = Field(
        default=500, ge=0, le=60_000, description="Longest a consumer's fetch waits at the "
        "broker for new records (Kafka's fetch.max.wait.ms). Kafka answers a waiting fetch as "
        "soon as data arrives, so its default costs no latency there; the development broker "
        "(Tansu) answers only when the wait ends: 10 there (tap to decision p50 7 ms instead "
        "of ~250 ms, measured).")
    kafka_linger_ms: int = Field(
        default=0, ge=0, le=1_000, description="How long the producer holds a record to "
        "batch it with the next ones (Kafka's linger.ms). The outbox relay hands the producer "
        "a whole batch at once, which fills request batches without lingering.")
    log_json: bool = True
    log_level: str = "INFO"
    otel_exporter: str = Field(default="none", description="none | console | otlp")
    failpoint_crash_after_commit: int = Field(
        default=0, ge=0, description="Fault injection, for the fault suite only (0: off, in "
        "every deployment): end the process like kill -9 right after its N-th committed unit "
        "of work that queued messages, before the relay publishes them.")


    @model_validator(mode="after")
    def _keys_parse(self) -> InfraSettings:
        for pems in (self.auth_public_keys, self.auth_public_key):
            public_keys(pems)  # a malformed key stops the start, not a login
        return self

    def verification_keys(self) -> str:
        """Every public key that verifies access tokens, as one PEM bundle."""
        return "\n".join(k for k in (self.auth_public_keys, self.auth_public_key) if k)


class ServiceSettings(BaseSettings):
    """Base of every service's Settings; subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(extra="ignore")

    infra: InfraSettings = Field(default_factory=InfraSettings)  # type: ignore[arg-type]
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")
    mongo_db: str = ""
    group_id: str = ""
    instance_id: str = Field(default="", description="Unique per running instance; defaults "
                             "to host-pid-random (owner of its outbox records).")
    max_attempts: int = Field(default=5, ge=1, description="Tries of a failing message before "
                              "it is dead-lettered (infrastructure outages retry forever).")
    conflict_retries: int = Field(default=30, ge=0, description="Quick retries of a message "
                                  "whose save lost a write conflict (another instance changed "
                                  "the same aggregate between load and save), before the "
                                  "failure counts as one of max_attempts.")
    retry_backoff_ms: int = Field(default=100, ge=1)
    retry_backoff_max_ms: int = Field(default=5_000, ge=1)
    consumer_batch_max: int = Field(default=100, ge=1, le=5_000, description="Most messages "
                                    "fetched and applied in one MongoDB transaction (1: one "
                                    "transaction per message). A batch whose message fails is "
                                    "rolled back and split, so only that message is retried or "
                                    "dead-lettered.")
    consumer_batch_timeout_ms: int = Field(default=100, ge=0, le=10_000, description="Longest "
                                           "a fetch waits to fill a batch when none is there.")
    outbox_batch: int = Field(default=200, ge=1)
    outbox_idle_ms: int = Field(default=500, ge=10, description="Relay poll when idle.")
    outbox_takeover_s: float = Field(default=30.0, description="Age after which another "
                                     "instance's unpublished outbox records are taken over.")
    outbox_delete_published: bool = Field(default=True, description="Delete outbox records "
                                          "once the broker took them (the topic keeps them); "
                                          "false marks them sent and keeps them a week, which "
                                          "costs a rewrite of every record (on the dev server "
                                          "4.5x a delete) and a larger outbox to query. Never "
                                          "false for an outbox that carries secrets (auth).")
    outbox_carries_secrets: bool = Field(default=False, description="The outbox holds "
                                         "secrets (auth): published records are always "
                                         "deleted and parked ones keep no payload.")
    outbox_max_attempts: int = Field(default=5, ge=1, description="Publishes of one outbox "
                                     "record the broker refuses while it is up, before the "
                                     "record is parked so the records of its key behind it "
                                     "flow (an outage counts no attempts).")
    outbox_retry_base_ms: int = Field(default=1_000, ge=1, description="Pause before a "
                                      "refused record is tried again; doubles each attempt.")
    outbox_publish_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait "
                                            "for the broker to take one record.")
    reply_max_bytes: int = Field(default=900_000, ge=1_000, description="Largest reply "
                                 "payload; a larger answer becomes the error reply_too_large "
                                 "(keep under the broker's max.message.bytes).")
    shutdown_grace_s: float = Field(default=15.0, ge=0)


def settings_problems(exc: ValidationError, settings_class: type[BaseSettings]) -> str:
    """The problems of a failed start, each named by its environment variable
    (``AUTH_PEPPER: Field required``); a check across fields by its message alone."""
    infra = exc.title == InfraSettings.__name__  # raised by the default factory of ``infra``
    prefix = "SCHOOLCARD_" if infra else str(settings_class.model_config.get("env_prefix", ""))
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] == "infra":
            loc, prefix = loc[1:], "SCHOOLCARD_"
        lines.append(f"{prefix}{loc[0].upper()}: {message}" if loc else message)
    return "; ".join(lines)
