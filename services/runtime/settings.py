"""Settings: environment variables only, validated at start (a missing required value stops
the process with a clear message before it touches the broker or the database).

Shared infrastructure uses the ``SCHOOLCARD_`` prefix; each service adds its own prefix
(``WALLET_``, ``AUTH_``...) for its own values. No other module reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.signing import KeyTable
from services.runtime.tokens import public_keys

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecuritySettings(BaseSettings):
    """How a client proves who it is to the broker and encrypts the connection
    (``SCHOOLCARD_KAFKA_*``), shared by the services and the operator CLI. Turned into client
    options only by ``services.runtime.kafka_security.kafka_connection``.

    Contradictions fail at start: a username without SASL would connect unauthenticated
    without a word, a certificate without TLS would never be presented."""

    model_config = SettingsConfigDict(env_prefix="SCHOOLCARD_", extra="ignore")

    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT (the development broker only), SSL, "
        "SASL_PLAINTEXT or SASL_SSL (production: SCRAM over TLS).")
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; required with "
        "SASL_*. PLAIN sends the password as it is, so only over SASL_SSL.")
    kafka_sasl_username: str = Field(default="", description="The principal: "
                                     "schoolcard-<service> "
                                     "(deploy/k8s/base/shared/kafka-users.yaml).")
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), description="Its password "
                                           "(from the service's Kafka user Secret).")
    kafka_ssl_cafile: Path | None = Field(default=None, description="PEM of the CA that "
                                          "signed the broker's certificate (default: the "
                                          "system's CAs).")
    kafka_ssl_certfile: Path | None = Field(default=None, description="PEM client certificate "
                                            "(mutual TLS); needs kafka_ssl_keyfile.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM key of "
                                           "kafka_ssl_certfile.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        protocol = self.kafka_security_protocol
        sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
        credentials = bool(self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value())
        if sasl:
            if self.kafka_sasl_mechanism is None:
                raise ValueError(f"SCHOOLCARD_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                 "SCHOOLCARD_KAFKA_SASL_MECHANISM (SCRAM-SHA-512, SCRAM-SHA-256 "
                                 "or PLAIN)")
            if not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
                raise ValueError(f"SCHOOLCARD_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                                 "SCHOOLCARD_KAFKA_SASL_USERNAME and "
                                 "SCHOOLCARD_KAFKA_SASL_PASSWORD")
            if self.kafka_sasl_mechanism == "PLAIN" and not tls:
                raise ValueError("SCHOOLCARD_KAFKA_SASL_MECHANISM=PLAIN sends the password as "
                                 "it is: use SASL_SSL, or a SCRAM mechanism")
        elif self.kafka_sasl_mechanism is not None or credentials:
            raise ValueError("SCHOOLCARD_KAFKA_SASL_* are set but "
                             f"SCHOOLCARD_KAFKA_SECURITY_PROTOCOL={protocol} does not "
                             "authenticate: use SASL_SSL (or SASL_PLAINTEXT)")
        files = {"SCHOOLCARD_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
                 "SCHOOLCARD_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                 "SCHOOLCARD_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        given = [name for name, path in files.items() if path is not None]
        if given and not tls:
            raise ValueError(f"{', '.join(given)} set but SCHOOLCARD_KAFKA_SECURITY_PROTOCOL="
                             f"{protocol} does not use TLS: use SSL or SASL_SSL")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("SCHOOLCARD_KAFKA_SSL_CERTFILE and SCHOOLCARD_KAFKA_SSL_KEYFILE "
                             "go together (mutual TLS)")
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"{name}={path}: no such file")
        return self


class AuthKeysSettings(BaseSettings):
    """The public keys that verify access tokens (``SCHOOLCARD_*``): every service and the
    gateway read them."""

    model_config = SettingsConfigDict(env_prefix="SCHOOLCARD_", extra="ignore")

    auth_public_keys: str = Field(default="", description="SCHOOLCARD_AUTH_PUBLIC_KEYS: PEM "
                                  "bundle of auth's Ed25519 public keys (one or more PUBLIC "
                                  "KEY blocks); a token verifies when its kid is the thumbprint "
                                  "of one of them. Two keys during a rotation (deploy/README.md)."
                                  " Required by services that authorise app commands.")
    auth_public_key: str = Field(default="", description="SCHOOLCARD_AUTH_PUBLIC_KEY: one PEM "
                                 "public key, the earlier name; joins SCHOOLCARD_AUTH_PUBLIC_KEYS.")

    @model_validator(mode="after")
    def _keys_parse(self) -> Self:
        for pems in (self.auth_public_keys, self.auth_public_key):
            public_keys(pems)  # a malformed key stops the start, not a login
        return self

    def verification_keys(self) -> str:
        """Every public key that verifies access tokens, as one PEM bundle."""
        return "\n".join(k for k in (self.auth_public_keys, self.auth_public_key) if k)


class InfraSettings(KafkaSecuritySettings, AuthKeysSettings):
    model_config = SettingsConfigDict(env_prefix="SCHOOLCARD_", extra="ignore")

    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port].")
    mongo_uri: str = Field(description="MongoDB URI (a replica set in production).")
    integrator_keys: dict[str, str] = Field(
        default_factory=dict, description="The integrators' Ed25519 public keys that sign "
        "money-creating and identity-changing messages (contracts/signing.py), as JSON "
        "{key id: PEM or base64 of the 32 raw bytes}; a key id is integrator:<name> or "
        "integrator:<name>#<key name> (several per integrator while keys rotate). Empty: every "
        "message that must be signed is dead-lettered unauthenticated.")
    integrator_keys_file: Path | None = Field(
        default=None, description="A JSON file of the same shape (a mounted Secret or "
        "ConfigMap), added to integrator_keys; a key id in both is an error.")
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
    kafka_idempotence: bool = Field(
        default=True, description="Idempotent producer (Kafka's enable.idempotence): the "
        "broker drops a batch the producer retried after a lost acknowledgement, so a retry "
        "never writes a record twice. False only where the broker cannot grant producer ids "
        "(the development broker, Tansu: deploy/local/stack.py).")
    kafka_linger_ms: int = Field(
        default=0, ge=0, le=1_000, description="How long the producer holds a record to "
        "batch it with the next ones (Kafka's linger.ms). The outbox relay hands the producer "
        "a whole batch at once, which fills request batches without lingering.")
    log_json: bool = True
    log_level: str = "INFO"
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="Where spans go: none (trace ids still reach the logs and "
        "the next service), console (stdout) or otlp (OTLP over HTTP to otel_endpoint).")
    otel_endpoint: str = Field(
        default="", description="Full URL of the collector's OTLP/HTTP traces endpoint, e.g. "
        "http://otel-collector:4318/v1/traces (empty: the exporter's default, "
        "http://localhost:4318/v1/traces). Spans are exported in the background: an absent "
        "collector never stops the service.")
    failpoint_crash_after_commit: int = Field(
        default=0, ge=0, description="Fault injection, for the fault suite only (0: off, in "
        "every deployment): end the process like kill -9 right after its N-th committed unit "
        "of work that queued messages, before the relay publishes them.")

    _key_table: KeyTable = PrivateAttr(default_factory=KeyTable)

    @model_validator(mode="after")
    def _integrator_keys(self) -> Self:
        """Parse the key table once, at start: a malformed key stops the process."""
        try:
            parsed = dict(KeyTable.parse(self.integrator_keys).keys)
        except ValueError as exc:
            raise ValueError(f"SCHOOLCARD_INTEGRATOR_KEYS: {exc}") from None
        path = self.integrator_keys_file
        if path is not None:
            try:
                from_file = KeyTable.from_json(path.read_text()).keys
            except (OSError, ValueError) as exc:
                raise ValueError(f"SCHOOLCARD_INTEGRATOR_KEYS_FILE={path}: {exc}") from None
            twice = sorted(set(parsed) & set(from_file))
            if twice:
                raise ValueError("key ids in both SCHOOLCARD_INTEGRATOR_KEYS and "
                                 f"SCHOOLCARD_INTEGRATOR_KEYS_FILE: {', '.join(twice)}")
            parsed.update(from_file)
        self._key_table = KeyTable(parsed)
        return self

    @property
    def integrator_key_table(self) -> KeyTable:
        """The parsed ``integrator_keys`` and ``integrator_keys_file``."""
        return self._key_table


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
    consumer_partition_concurrency: int = Field(
        default=0, ge=0, le=64, description="Partitions of one fetched batch applied at the "
        "same time, each in its own transaction (records of one partition stay in order); 1 "
        "applies the whole batch in one transaction. 0: 4 on MongoDB, 1 on the dev server "
        "nx-27017, which serialises transactions per database (smaller concurrent "
        "transactions only queue there).")

    def partition_concurrency(self) -> int:
        if self.consumer_partition_concurrency:
            return self.consumer_partition_concurrency
        return 1 if self.infra.mongo_dialect == "nx27017" else 4
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
    consumer_lag_interval_s: float = Field(default=15.0, ge=0, description="How often the "
                                           "consumer's lag per partition is measured for "
                                           "schoolcard_consumer_lag (0: never).")
    liveness_stall_s: float = Field(
        default=120.0, gt=0, description="/healthz fails (503, consumer_progress false) when "
        "the consumer holds a batch and has made no progress for this long — no message "
        "attempt ended, no batch finished: a handler stuck on an await that never returns. "
        "Keep it a few times the longest batch (consumer_batch_max messages, a slow "
        "transaction, retry pauses up to retry_backoff_max_ms); an idle consumer, with "
        "nothing to read, never fails it.")


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
