"""``SCHOOLCARD_KAFKA_*`` security settings: what each combination gives the FastStream broker
and the raw aiokafka clients, and the combinations that stop the process at start."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.security import SASLScram256, SASLScram512
from pydantic import ValidationError

from services.runtime.broker import make_broker
from services.runtime.kafka_security import kafka_connection
from services.runtime.settings import InfraSettings

pytestmark = pytest.mark.unit

PASSWORD = "s3cret-pa55word"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                 "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
        monkeypatch.delenv(f"SCHOOLCARD_KAFKA_{name}", raising=False)
    monkeypatch.setenv("SCHOOLCARD_KAFKA_BOOTSTRAP", "kafka-0.kafka:9093")
    monkeypatch.setenv("SCHOOLCARD_MONGO_URI", "mongodb://unused")
    return monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key, usable as CA file and as client certificate."""
    d = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "schoolcard-test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return {"ca": d / "ca.pem", "key": d / "key.pem"}


def test_without_settings_the_clients_connect_in_plaintext(env) -> None:
    infra = InfraSettings()
    conn = kafka_connection(infra.kafka_bootstrap, infra)
    assert conn.security is None and conn.protocol == "PLAINTEXT"
    assert conn.options() == {"bootstrap_servers": "kafka-0.kafka:9093"}
    assert "security_protocol" not in make_broker("wallet", infra)._connection_kwargs


def test_scram_over_tls_reaches_the_broker_and_the_raw_clients_alike(env, pki) -> None:
    env.setenv("SCHOOLCARD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("SCHOOLCARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("SCHOOLCARD_KAFKA_SASL_USERNAME", "schoolcard-wallet")
    env.setenv("SCHOOLCARD_KAFKA_SASL_PASSWORD", PASSWORD)
    env.setenv("SCHOOLCARD_KAFKA_SSL_CAFILE", str(pki["ca"]))
    infra = InfraSettings()
    conn = kafka_connection(infra.kafka_bootstrap, infra)
    assert isinstance(conn.security, SASLScram512)

    options = conn.options()
    assert {k: options[k] for k in ("bootstrap_servers", "security_protocol", "sasl_mechanism",
                                    "sasl_plain_username", "sasl_plain_password")} == {
        "bootstrap_servers": "kafka-0.kafka:9093", "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "schoolcard-wallet",
        "sasl_plain_password": PASSWORD}
    ctx = options["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        ((("commonName", "schoolcard-test-ca"),),)]

    # the FastStream broker (producer and subscribers) gets the same options
    broker_kwargs = make_broker("wallet", infra)._connection_kwargs
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                "sasl_plain_password"):
        assert broker_kwargs[key] == options[key]
    assert isinstance(broker_kwargs["ssl_context"], ssl.SSLContext)


def test_scram_256_without_tls_and_tls_with_a_client_certificate(env, pki) -> None:
    env.setenv("SCHOOLCARD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("SCHOOLCARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("SCHOOLCARD_KAFKA_SASL_USERNAME", "schoolcard-notify")
    env.setenv("SCHOOLCARD_KAFKA_SASL_PASSWORD", PASSWORD)
    conn = kafka_connection("b:9092", InfraSettings())
    assert isinstance(conn.security, SASLScram256)
    assert conn.options()["security_protocol"] == "SASL_PLAINTEXT"
    assert conn.options()["ssl_context"] is None

    for name in ("SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"):
        env.delenv(f"SCHOOLCARD_KAFKA_{name}")
    env.setenv("SCHOOLCARD_KAFKA_SECURITY_PROTOCOL", "SSL")
    env.setenv("SCHOOLCARD_KAFKA_SSL_CAFILE", str(pki["ca"]))
    env.setenv("SCHOOLCARD_KAFKA_SSL_CERTFILE", str(pki["ca"]))
    env.setenv("SCHOOLCARD_KAFKA_SSL_KEYFILE", str(pki["key"]))
    options = kafka_connection("b:9092", InfraSettings()).options()
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize(("settings", "message"), [
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "SASL_SSL needs SCHOOLCARD_KAFKA_SASL_MECHANISM"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u"},
     "needs SCHOOLCARD_KAFKA_SASL_USERNAME and SCHOOLCARD_KAFKA_SASL_PASSWORD"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD}, "PLAIN sends the password as it is"),
    ({"SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "SCHOOLCARD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not authenticate"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "SCRAM-SHA-512",
      "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD, "SSL_CAFILE": "{ca}"},
     "SCHOOLCARD_KAFKA_SSL_CAFILE set but SCHOOLCARD_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "{ca}"},
     "SCHOOLCARD_KAFKA_SSL_CERTFILE and SCHOOLCARD_KAFKA_SSL_KEYFILE go together"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "/nonexistent/ca.pem"},
     "SCHOOLCARD_KAFKA_SSL_CAFILE=/nonexistent/ca.pem: no such file"),
    ({"SECURITY_PROTOCOL": "SASL", "SASL_MECHANISM": "SCRAM-SHA-512"},
     "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD}, "'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
], ids=["no-mechanism", "no-password", "plain-in-clear", "credentials-unused", "ca-unused",
        "cert-without-key", "missing-file", "unknown-protocol", "unknown-mechanism"])
def test_contradictory_settings_stop_the_process_at_start_without_the_password(
        env, pki, settings: dict[str, str], message: str) -> None:
    for name, value in settings.items():
        env.setenv(f"SCHOOLCARD_KAFKA_{name}", value.format(ca=pki["ca"]))
    with pytest.raises(ValidationError) as failure:
        InfraSettings()
    assert message in str(failure.value)
    assert PASSWORD not in str(failure.value)


def test_the_password_never_shows_in_a_representation(env) -> None:
    env.setenv("SCHOOLCARD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("SCHOOLCARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("SCHOOLCARD_KAFKA_SASL_USERNAME", "schoolcard-auth")
    env.setenv("SCHOOLCARD_KAFKA_SASL_PASSWORD", PASSWORD)
    infra = InfraSettings()
    conn = kafka_connection(infra.kafka_bootstrap, infra)
    for text in (repr(infra), str(infra), infra.model_dump_json(), repr(conn)):
        assert PASSWORD not in text
