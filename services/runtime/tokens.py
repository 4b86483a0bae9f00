"""Access tokens: issued by auth (Ed25519, ``alg: EdDSA``), verified by every service with
auth's public keys, so parent commands are authorised without a call to auth. What a verified
token allows is ``services.runtime.authorization``.

Key ids: the header's ``kid`` is the RFC 7638 thumbprint of the signing key's public half,
derived on both sides (auth from its private key, a service from each public key it holds), so
a kid can never be paired with the wrong key by configuration. A service holds a set of public
keys (a PEM bundle): during a rotation both keys verify, and a token whose kid is not in the set
is refused with ``unknown_key``.

Audience: ``aud`` lists the services that accept the token (``authorization.audience``: auth
plus the services of the role's actions); a service not named refuses it with
``wrong_audience``, so a token minted for one service cannot be replayed at another.

Refusal codes: ``unauthenticated`` (no token), ``invalid_token`` (malformed, bad signature,
wrong issuer), ``unknown_key``, ``token_expired``, ``wrong_audience``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.auth import AccessTokenClaims, ChildGrant, Role
from services.runtime.authorization import TokenError as TokenError
from services.runtime.authorization import audience as role_audience

ISSUER = "schoolcard-auth"
ACCESS_TOKEN_TTL_S = 300
ALGORITHM = "EdDSA"
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint of an Ed25519 public key (base64url SHA-256, 43 characters)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    jwk = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode()


@functools.lru_cache(maxsize=8)
def signing_key(private_key_pem: str) -> tuple[str, Ed25519PrivateKey]:
    """(kid, key) of a PEM private key; ValueError unless it is an Ed25519 key."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (TypeError, UnsupportedAlgorithm) as exc:  # encrypted, or a kind we cannot load
        raise ValueError(str(exc)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key is not an Ed25519 private key")
    return key_id(key.public_key()), key


@functools.lru_cache(maxsize=8)
def public_keys(pem_bundle: str) -> dict[str, Ed25519PublicKey]:
    """The verification keys of a PEM bundle (one or more ``PUBLIC KEY`` blocks) by kid;
    ValueError on a block that is not an Ed25519 public key. An empty bundle is no keys."""
    keys: dict[str, Ed25519PublicKey] = {}
    for block in _PEM_BLOCK.findall(pem_bundle):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except UnsupportedAlgorithm as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("an auth public key is not an Ed25519 key")
        keys[key_id(key)] = key
    if pem_bundle.strip() and not keys:
        raise ValueError("no PEM public key found (expected -----BEGIN PUBLIC KEY-----)")
    return keys


def issue_access_token(private_key_pem: str, *, account_id: str, session_id: str, role: Role,
                       children: Iterable[ChildGrant] = (), school_id: str | None = None,
                       operator_id: str | None = None,
                       audience: Iterable[str] | None = None, now: float | None = None,
                       ttl_s: int = ACCESS_TOKEN_TTL_S) -> str:
    """A signed access token; ``audience`` defaults to the services the role may call."""
    kid, key = signing_key(private_key_pem)
    issued = int(now if now is not None else time.time())
    claims = AccessTokenClaims(iss=ISSUER, sub=account_id, sid=session_id, role=role,
                               school_id=school_id, operator_id=operator_id,
                               children=list(children), iat=issued,
                               exp=issued + ttl_s, jti=secrets.token_urlsafe(16),
                               aud=list(role_audience(role) if audience is None else audience))
    return jwt.encode(claims.model_dump(mode="json"), key, algorithm=ALGORITHM,
                      headers={"kid": kid})


def verify_access_token(token: str | None, public_key_pems: str, *, audience: str,
                        now: float | None = None) -> AccessTokenClaims:
    """The claims of ``token`` if one of the keys in ``public_key_pems`` (a PEM bundle) signed
    it, it has not expired and ``audience`` (the verifying service) is in its ``aud``."""
    if not token:
        raise TokenError("unauthenticated", "no access token")
    if token.lower().startswith("bearer "):
        token = token[7:]
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"access token rejected: {type(exc).__name__}") from None
    key = public_keys(public_key_pems).get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("unknown_key", "access token signed by a key this service does not "
                         "know")
    try:
        data = jwt.decode(token, key, algorithms=[ALGORITHM], issuer=ISSUER,
                          options={"verify_exp": False, "verify_aud": False,
                                   "require": ["exp", "iat", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"access token rejected: {type(exc).__name__}") from None
    claims = AccessTokenClaims.model_validate(data)
    # Expiry is checked against the injectable clock, not the wall clock inside PyJWT.
    if claims.exp <= int(now if now is not None else time.time()):
        raise TokenError("token_expired", "access token expired")
    if audience not in claims.aud:
        raise TokenError("wrong_audience", f"access token not meant for {audience}")
    return claims
