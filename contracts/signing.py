"""Integrator signatures: who may create money and change identities.

Anyone who can write to the broker could publish ``TopUpReceived`` (money from nothing) or
``CardReissued`` (a child's balance moved to another card). So the message types the catalog
marks ``signed`` must carry an Ed25519 signature of the integrator that produces their topic,
and every consuming service verifies it before any handler runs
(``services.runtime.consumer``): a missing, malformed, unknown, foreign or wrong signature is
dead-lettered ``unauthenticated``.

The wire format (documented in ``docs/asyncapi.json``):

- ``schoolcard-signer``: the key id, ``<integrator id>`` or ``<integrator id>#<key name>``
  (e.g. ``integrator:payments#2026-09``): several keys per integrator, so keys rotate by adding
  the new one, moving the integrator to it, then removing the old one;
- ``schoolcard-signature``: standard base64 of the 64-byte Ed25519 signature of
  ``schoolcard-signature-v1 LF <topic> LF <ce_type> LF <ce_id> LF <record value bytes>``.

The topic, type and id are signed with the exact value bytes so that a genuine record cannot
be reused elsewhere: published again under a new ``ce_id`` it no longer verifies (and under its
own id it is a duplicate the inbox drops), nor can its bytes be read as another type or on
another topic. Pure functions and key objects only: reading key files is the caller's job.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from contracts import catalog
from contracts.envelope import HEADER_ID, HEADER_TYPE

HEADER_SIGNATURE = "schoolcard-signature"
HEADER_SIGNER = "schoolcard-signer"
ALGORITHM = "Ed25519"
CONTEXT = b"schoolcard-signature-v1"
SIGNATURE_BYTES = 64
_RAW_KEY_BYTES = 32


class SigningError(ValueError):
    """A record that cannot be signed (a field that would make the signed input ambiguous, no
    key for the integrator that must sign)."""


class Unauthenticated(Exception):
    """A record whose signature does not prove that the topic's integrator published it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def integrator_of(kid: str) -> str:
    """The integrator a key id belongs to: ``integrator:payments#2026-09`` ->
    ``integrator:payments``."""
    return kid.split("#", 1)[0]


def signing_input(topic: str, type_name: str, message_id: str, value: bytes) -> bytes:
    """The bytes an integrator signs. The three names may not contain a line feed, so no two
    different records share one input."""
    for what, text in (("topic", topic), ("ce_type", type_name), ("ce_id", message_id)):
        if not text or "\n" in text:
            raise SigningError(f"{what} is empty or contains a line feed")
    return b"\n".join((CONTEXT, topic.encode(), type_name.encode(), message_id.encode(), value))


def generate_key_pair() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, public_pem(key.public_key())


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM (``-----BEGIN PUBLIC KEY-----``) or the standard base64
    of its 32 raw bytes; ValueError for anything else (another algorithm included)."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"not an {ALGORITHM} public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("neither a PEM nor base64") from None
    if len(raw) != _RAW_KEY_BYTES:
        raise ValueError(f"a raw {ALGORITHM} public key is {_RAW_KEY_BYTES} bytes, "
                         f"not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class SigningKey:
    """An integrator's private key and its key id (``schoolcard-signer``)."""

    kid: str
    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_pem(cls, kid: str, pem: str) -> SigningKey:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{kid}: not an {ALGORITHM} private key")
        return cls(kid, key)

    @property
    def integrator(self) -> str:
        return integrator_of(self.kid)

    def headers(self, topic: str, type_name: str, message_id: str,
                value: bytes) -> dict[str, str]:
        """The two headers that sign this record."""
        signature = self.private.sign(signing_input(topic, type_name, message_id, value))
        return {HEADER_SIGNER: self.kid,
                HEADER_SIGNATURE: base64.b64encode(signature).decode()}


class Signers:
    """The keys a publisher holds (an integrator its own; the dev simulators every
    integrator's): signs exactly the records whose type the catalog marks signed."""

    def __init__(self, keys: Iterable[SigningKey] = ()) -> None:
        self.by_integrator = {k.integrator: k for k in keys}

    def headers(self, topic: str, headers: Mapping[str, str], value: bytes) -> dict[str, str]:
        """The signature headers the record (topic, envelope headers, value) needs: none when
        its type needs no signature; SigningError when the key of its integrator is missing."""
        type_name = headers.get(HEADER_TYPE, "")
        signer = catalog.required_signer(topic, type_name)
        if signer is None:
            return {}
        key = self.by_integrator.get(signer)
        if key is None:
            raise SigningError(f"{type_name.rsplit('.', 1)[-1]} on {topic} must be signed by "
                               f"{signer}, and there is no key of it")
        return key.headers(topic, type_name, headers.get(HEADER_ID, ""), value)


@dataclass(frozen=True)
class KeyTable:
    """The integrators' public keys by key id, as every consuming service holds them."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def parse(cls, table: Mapping[str, str]) -> KeyTable:
        """From {key id: PEM or base64 raw key}; ValueError naming the first bad entry."""
        keys: dict[str, Ed25519PublicKey] = {}
        for kid, text in table.items():
            if not integrator_of(kid).startswith("integrator:"):
                raise ValueError(f"key id {kid!r} must name an integrator "
                                 "(integrator:<name> or integrator:<name>#<key name>)")
            try:
                keys[kid] = load_public_key(text)
            except ValueError as exc:
                raise ValueError(f"key {kid!r}: {exc}") from None
        return cls(keys)

    @classmethod
    def from_json(cls, text: str) -> KeyTable:
        data = json.loads(text)
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ValueError("the key table must be a JSON object {key id: public key}")
        return cls.parse(data)

    @property
    def integrators(self) -> frozenset[str]:
        return frozenset(integrator_of(kid) for kid in self.keys)

    def verify(self, signer: str, topic: str, headers: Mapping[str, str],
               value: bytes | None) -> str:
        """The key id that signed this record on behalf of ``signer`` (the topic's
        integrator); Unauthenticated with the reason otherwise. Reasons name headers and key
        ids, never the payload."""
        kid = headers.get(HEADER_SIGNER)
        encoded = headers.get(HEADER_SIGNATURE)
        if not kid or not encoded:
            missing = [h for h, v in ((HEADER_SIGNER, kid), (HEADER_SIGNATURE, encoded)) if not v]
            raise Unauthenticated(f"unsigned: no {' and no '.join(missing)} header; "
                                  f"{signer} must sign it")
        if integrator_of(kid) != signer:
            raise Unauthenticated(f"signed by {kid[:100]!r}, but only {signer} may publish "
                                  f"on {topic}")
        key = self.keys.get(kid)
        if key is None:
            raise Unauthenticated(f"unknown key {kid[:100]!r} (not in "
                                  "SCHOOLCARD_INTEGRATOR_KEYS)")
        try:
            signature = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise Unauthenticated(f"{HEADER_SIGNATURE} is not base64") from None
        if len(signature) != SIGNATURE_BYTES:
            raise Unauthenticated(f"{HEADER_SIGNATURE} is {len(signature)} bytes, an "
                                  f"{ALGORITHM} signature {SIGNATURE_BYTES}")
        try:
            data = signing_input(topic, headers.get(HEADER_TYPE, ""),
                                 headers.get(HEADER_ID, ""), value or b"")
            key.verify(signature, data)
        except (SigningError, InvalidSignature):
            raise Unauthenticated(f"the signature of {kid} does not match this record "
                                  "(topic, ce_type, ce_id and value as signed)") from None
        return kid
