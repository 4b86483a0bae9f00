"""Cryptographic helpers of the auth service: password hashing, secrets, one-time-code MACs,
TOTP (RFC 6238) and Ed25519 access tokens.

Everything here is synchronous. ``hash_password``/``verify_password`` cost ~50 ms of CPU and
19 MiB of memory each by design: async callers must run them in a worker thread
(``await asyncio.to_thread(hash_password, pw)``), never on the event loop.

The access-token verifier only needs PyJWT and cryptography, so other services can import
:func:`verify_access_token` without pulling in the auth domain.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import struct
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

# OWASP Password Storage Cheat Sheet, argon2id first option: m=19 MiB, t=2, p=1.
ARGON2_MEMORY_COST_KIB = 19_456
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def normalize_password(password: str) -> str:
    """NFKC-normalise (NIST SP 800-63B 5.1.1.2) so that the same typed password hashes the same
    on every keyboard; nothing is stripped or truncated."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """argon2id PHC string of the normalised password (salted; the full password is hashed)."""
    return _HASHER.hash(normalize_password(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """True if ``password`` matches; a malformed stored hash raises ``InvalidHashError``
    (corrupt data must not look like a wrong password)."""
    try:
        return _HASHER.verify(stored_hash, normalize_password(password))
    except (VerifyMismatchError, VerificationError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    """True if the hash was made with weaker (or other) parameters than the current ones."""
    return _HASHER.check_needs_rehash(stored_hash)


@dataclass(frozen=True)
class Argon2Parameters:
    variant: str
    version: int
    memory_cost_kib: int
    time_cost: int
    parallelism: int


def parse_argon2_hash(stored_hash: str) -> Argon2Parameters:
    """Parse ``$argon2id$v=19$m=19456,t=2,p=1$salt$hash`` (for audits and tests)."""
    parts = stored_hash.split("$")
    if len(parts) != 6 or not parts[1].startswith("argon2"):
        raise ValueError("not an argon2 PHC string")
    params = dict(item.split("=", 1) for item in parts[3].split(","))
    return Argon2Parameters(
        variant=parts[1],
        version=int(parts[2].removeprefix("v=")),
        memory_cost_kib=int(params["m"]),
        time_cost=int(params["t"]),
        parallelism=int(params["p"]),
    )


def meets_password_hash_policy(stored_hash: str) -> bool:
    p = parse_argon2_hash(stored_hash)
    return (
        p.variant == "argon2id"
        and p.version == ARGON2_VERSION
        and p.memory_cost_kib >= ARGON2_MEMORY_COST_KIB
        and p.time_cost >= ARGON2_TIME_COST
        and p.parallelism >= ARGON2_PARALLELISM
    )


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def dummy_verify(password: str) -> None:
    """Spend the same work as a real verification, for logins with an unknown identifier, so
    response time does not reveal whether an account exists."""
    verify_password(_dummy_hash(), password)


# --- random secrets -------------------------------------------------------------------------

OTP_DIGITS = 6


def new_otp_code() -> str:
    """Six decimal digits from the CSPRNG (uniform: ``secrets.randbelow``)."""
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def otp_mac(pepper: bytes, *, account_id: str, purpose: str, code_id: str, code: str) -> str:
    """HMAC-SHA256 of a one-time code bound to its account, purpose and issue.

    Binding the MAC to these fields means a stored hash can never be replayed for another
    account or purpose, and the pepper (kept out of the database) makes the 10^6 code space
    useless to someone who only stole the database.
    """
    message = f"{account_id}\x1f{purpose}\x1f{code_id}\x1f{code}".encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()


def new_refresh_token() -> str:
    """256 bits of entropy, URL-safe."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    return uuid.uuid4().hex


def hash_token(token: str) -> str:
    """SHA-256 hex of a high-entropy token; a slow hash is pointless at 256 bits of entropy."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_ip(pepper: bytes, ip: str) -> str:
    """Keyed hash of an IP address: lets the owner compare logins without storing the IP."""
    return hmac.new(pepper, ip.encode(), hashlib.sha256).hexdigest()[:32]


# --- TOTP (RFC 6238 over RFC 4226 HOTP) -----------------------------------------------------

TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6


def new_totp_secret() -> str:
    """160-bit secret (RFC 4226 recommends >= 128, SHA-1 block-friendly 160), base32."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _b32decode(secret_b32: str) -> bytes:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded)


def hotp(key: bytes, counter: int, *, digits: int = TOTP_DIGITS, digest: str = "sha1") -> str:
    mac = hmac.new(key, struct.pack(">Q", counter), digest).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{binary % 10**digits:0{digits}d}"


def totp_step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def totp_code(secret_b32: str, now: datetime, *, digits: int = TOTP_DIGITS) -> str:
    return hotp(_b32decode(secret_b32), totp_step(now), digits=digits)


def match_totp(secret_b32: str, code: str, now: datetime, *, window: int = 1) -> int | None:
    """The matching time step within +-``window`` steps of ``now``, else None (constant-time
    comparison for each candidate). Callers reject steps not newer than the last accepted one."""
    key = _b32decode(secret_b32)
    current = totp_step(now)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(hotp(key, step), code) and found is None:
            found = step
    return found


# --- access tokens (JWT, EdDSA/Ed25519) -----------------------------------------------------

ACCESS_TOKEN_ISSUER = "schoolcard-auth"
ACCESS_TOKEN_TTL = timedelta(minutes=5)
ACCESS_TOKEN_ALGORITHM = "EdDSA"


class AccessRole(StrEnum):
    PARENT = "parent"
    SCHOOL_ADMIN = "school_admin"
    CANTEEN_OPERATOR = "canteen_operator"
    TEACHER = "teacher"
    SUPPORT = "support"
    INTEGRATOR = "integrator"


class ChildRole(StrEnum):
    PRIMARY = "primary"
    CO_GUARDIAN = "co_guardian"
    VIEWER = "viewer"


@dataclass(frozen=True)
class ChildClaim:
    contract: str
    role: ChildRole


@dataclass(frozen=True)
class AccessClaims:
    """What the caller chooses; ``iss``/``iat``/``exp``/``jti`` are set on issue."""

    sub: str
    sid: str
    role: AccessRole
    children: tuple[ChildClaim, ...] = ()
    school_id: str | None = None


@dataclass(frozen=True)
class VerifiedAccess:
    sub: str
    sid: str
    role: AccessRole
    children: tuple[ChildClaim, ...]
    school_id: str | None
    issued_at: datetime
    expires_at: datetime
    jti: str
    raw: dict[str, Any] = field(compare=False, repr=False)

    def child_role(self, contract: str) -> ChildRole | None:
        return next((c.role for c in self.children if c.contract == contract), None)


class AccessTokenErrorCode(StrEnum):
    MALFORMED = "token_malformed"
    BAD_SIGNATURE = "token_bad_signature"
    EXPIRED = "token_expired"
    NOT_YET_VALID = "token_not_yet_valid"
    WRONG_ISSUER = "token_wrong_issuer"
    BAD_CLAIMS = "token_bad_claims"


class AccessTokenError(Exception):
    def __init__(self, code: AccessTokenErrorCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code


def generate_signing_keys() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@functools.lru_cache(maxsize=8)
def _private_key(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("access tokens are signed with an Ed25519 key")
    return key


@functools.lru_cache(maxsize=8)
def _public_key(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("access tokens are verified with an Ed25519 key")
    return key


def issue_access_token(
    claims: AccessClaims, private_key_pem: str, now: datetime, *, jti: str | None = None
) -> str:
    """Sign a 5-minute access token; ``now`` is the injected clock (tz-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    iat = int(now.timestamp())
    payload: dict[str, Any] = {
        "iss": ACCESS_TOKEN_ISSUER,
        "sub": claims.sub,
        "sid": claims.sid,
        "role": claims.role.value,
        "iat": iat,
        "exp": iat + int(ACCESS_TOKEN_TTL.total_seconds()),
        "jti": jti or secrets.token_urlsafe(16),
        "children": [{"contract": c.contract, "role": c.role.value} for c in claims.children],
    }
    if claims.school_id is not None:
        payload["school_id"] = claims.school_id
    return jwt.encode(payload, _private_key(private_key_pem), algorithm=ACCESS_TOKEN_ALGORITHM)


def verify_access_token(
    token: str, public_key_pem: str, now: datetime, *, leeway_seconds: int = 0
) -> VerifiedAccess:
    """Check signature (EdDSA only, never "none"), issuer and lifetime against the injected
    ``now``; raise :class:`AccessTokenError` with a code otherwise. A token is valid for
    ``iat - leeway <= now < exp + leeway``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            _public_key(public_key_pem),
            algorithms=[ACCESS_TOKEN_ALGORITHM],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_iss": False,
                "require": ["iss", "sub", "sid", "role", "iat", "exp", "jti"],
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise AccessTokenError(AccessTokenErrorCode.BAD_SIGNATURE) from exc
    except jwt.MissingRequiredClaimError as exc:
        raise AccessTokenError(AccessTokenErrorCode.BAD_CLAIMS, str(exc)) from exc
    except jwt.InvalidTokenError as exc:
        raise AccessTokenError(AccessTokenErrorCode.MALFORMED, type(exc).__name__) from exc
    if payload["iss"] != ACCESS_TOKEN_ISSUER:
        raise AccessTokenError(AccessTokenErrorCode.WRONG_ISSUER)
    try:
        iat = int(payload["iat"])
        exp = int(payload["exp"])
        role = AccessRole(payload["role"])
        children = tuple(
            ChildClaim(contract=str(c["contract"]), role=ChildRole(c["role"]))
            for c in payload.get("children", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AccessTokenError(AccessTokenErrorCode.BAD_CLAIMS, str(exc)) from exc
    t = now.timestamp()
    if t >= exp + leeway_seconds:
        raise AccessTokenError(AccessTokenErrorCode.EXPIRED)
    if t < iat - leeway_seconds:
        raise AccessTokenError(AccessTokenErrorCode.NOT_YET_VALID)
    return VerifiedAccess(
        sub=str(payload["sub"]),
        sid=str(payload["sid"]),
        role=role,
        children=children,
        school_id=None if payload.get("school_id") is None else str(payload["school_id"]),
        issued_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
        jti=str(payload["jti"]),
        raw=payload,
    )
