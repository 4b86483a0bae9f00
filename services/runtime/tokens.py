"""Access tokens: issued by auth (Ed25519, ``alg: EdDSA``), verified by every service with
auth's public key, so parent commands are authorised without a call to auth. What a verified
token allows is ``services.runtime.authorization``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.auth import AccessTokenClaims, ChildGrant, Role

ISSUER = "schoolcard-auth"
ACCESS_TOKEN_TTL_S = 300
ALGORITHM = "EdDSA"


class TokenError(Exception):
    """Missing, malformed, expired or forged token; ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def issue_access_token(private_key_pem: str, *, account_id: str, session_id: str, role: Role,
                       children: Iterable[ChildGrant] = (), school_id: str | None = None,
                       now: float | None = None, ttl_s: int = ACCESS_TOKEN_TTL_S) -> str:
    issued = int(now if now is not None else time.time())
    claims = AccessTokenClaims(iss=ISSUER, sub=account_id, sid=session_id, role=role,
                               school_id=school_id, children=list(children), iat=issued,
                               exp=issued + ttl_s, jti=secrets.token_urlsafe(16))
    return jwt.encode(claims.model_dump(mode="json"), private_key_pem, algorithm=ALGORITHM)


def verify_access_token(token: str | None, public_key_pem: str, *,
                        now: float | None = None) -> AccessTokenClaims:
    if not token:
        raise TokenError("unauthenticated", "no access token")
    if token.lower().startswith("bearer "):
        token = token[7:]
    try:
        data = jwt.decode(token, public_key_pem, algorithms=[ALGORITHM], issuer=ISSUER,
                          options={"verify_exp": False, "require": ["exp", "iat", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError("invalid_token", f"access token rejected: {type(exc).__name__}") from None
    claims = AccessTokenClaims.model_validate(data)
    # Expiry is checked against the injectable clock, not the wall clock inside PyJWT.
    if claims.exp <= int(now if now is not None else time.time()):
        raise TokenError("token_expired", "access token expired")
    return claims
