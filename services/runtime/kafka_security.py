"""The one place where the Kafka security settings become client options: every connection
the services and the operator CLI open (FastStream broker, admin clients, lag and reply-topic
clients, the CLI's producers and consumers) is built from a ``KafkaConnection``.

FastStream's ``security=`` object is made first and the raw aiokafka options are derived from
it with FastStream's own translation (``parse_security``), so the broker and the raw clients
cannot disagree about protocol, mechanism or TLS.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from services.runtime.settings import KafkaSecuritySettings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


@dataclass(frozen=True)
class KafkaConnection:
    """Where the broker is and how to connect to it. ``security`` None is PLAINTEXT (the
    development broker); its password never appears in ``repr``."""

    bootstrap: str
    security: BaseSecurity | None = field(default=None, repr=False)

    @property
    def protocol(self) -> str:
        return str(self.options().get("security_protocol", "PLAINTEXT"))

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        return {"bootstrap_servers": self.bootstrap, **parse_security(self.security)}


def ssl_context(s: KafkaSecuritySettings) -> ssl.SSLContext:
    """Verifies the broker's certificate and host name against the given CA (the system's
    CAs without one); presents a client certificate when one is configured."""
    ctx = ssl.create_default_context(
        cafile=str(s.kafka_ssl_cafile) if s.kafka_ssl_cafile is not None else None)
    if s.kafka_ssl_certfile is not None and s.kafka_ssl_keyfile is not None:
        ctx.load_cert_chain(str(s.kafka_ssl_certfile), str(s.kafka_ssl_keyfile))
    return ctx


def kafka_connection(bootstrap: str, s: KafkaSecuritySettings) -> KafkaConnection:
    """The settings (validated when they were read) as a connection."""
    protocol = s.kafka_security_protocol
    ctx = ssl_context(s) if protocol in ("SSL", "SASL_SSL") else None
    security: BaseSecurity | None
    if protocol == "PLAINTEXT":
        security = None
    elif protocol == "SSL":
        security = BaseSecurity(ssl_context=ctx, use_ssl=True)
    else:
        assert s.kafka_sasl_mechanism is not None  # the settings' validator requires it
        security = _SASL[s.kafka_sasl_mechanism](
            s.kafka_sasl_username, s.kafka_sasl_password.get_secret_value(),
            ssl_context=ctx, use_ssl=protocol == "SASL_SSL")
    return KafkaConnection(bootstrap, security)

