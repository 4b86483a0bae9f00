"""Against a real broker that requires authentication (Tansu with ``--authentication``): a
client without credentials and one with wrong SCRAM credentials are both refused, and the
clients the services open (admin, lag, FastStream broker) carry the configured credentials
into that exchange.

Tansu 0.6 offers SCRAM only (no PLAIN), accepts ``--cert``/``--key`` but still serves plain
TCP, and on its in-memory storage cannot get a first user (creating one needs an
authenticated client): refusals are what can be shown here, not an accepted login."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from deploy.local import stack as devstack
from services.runtime.broker import group_lag, make_broker, provision_topics
from services.runtime.kafka_security import KafkaConnection, kafka_connection
from services.runtime.settings import InfraSettings

pytestmark = pytest.mark.integration

SCRAM_REFUSED = "^'v'$"
"""How aiokafka 0.14 reports a refused SCRAM login: the broker's final message carries an
error (``e=...``) instead of its signature (``v=...``), and the client fails looking for it."""


@pytest.fixture(scope="module")
def auth_bootstrap(run_dir: Path) -> Iterator[str]:
    broker = devstack.start_broker(run_dir, authentication=True)
    try:
        yield f"127.0.0.1:{broker.port}"
    finally:
        broker.stop()


def scram_settings(bootstrap: str, password: str) -> InfraSettings:
    return InfraSettings(kafka_bootstrap=bootstrap, mongo_uri="mongodb://unused",
                         kafka_security_protocol="SASL_PLAINTEXT",
                         kafka_sasl_mechanism="SCRAM-SHA-512",
                         kafka_sasl_username="schoolcard-wallet",
                         kafka_sasl_password=SecretStr(password))


async def test_a_client_without_credentials_is_refused(auth_bootstrap: str,
                                                       bootstrap: str) -> None:
    open_admin = AIOKafkaAdminClient(**KafkaConnection(bootstrap).options())
    await open_admin.start()  # the same client is let in by the open development broker
    await open_admin.close()

    admin = AIOKafkaAdminClient(**KafkaConnection(auth_bootstrap).options(),
                                request_timeout_ms=5_000)
    with pytest.raises(KafkaConnectionError):
        await admin.start()
    await admin.close()


async def test_wrong_scram_credentials_are_refused_in_the_sasl_exchange(
        auth_bootstrap: str) -> None:
    """Not a connection failure like the client without credentials: the settings reached
    each client, it ran the SCRAM exchange, and the broker refused the user."""
    infra = scram_settings(auth_bootstrap, "not-the-password")
    with pytest.raises(KeyError, match=SCRAM_REFUSED):
        await provision_topics(infra)
    with pytest.raises(KeyError, match=SCRAM_REFUSED):
        await group_lag(kafka_connection(auth_bootstrap, infra), "schoolcard-wallet",
                        "wallet.commands.v1")
    broker = make_broker("wallet", infra)
    try:
        with pytest.raises(KeyError, match=SCRAM_REFUSED):
            await broker.connect()
    finally:
        await broker.stop()
