"""Cryptographic helpers of the auth service: password hashing, secrets, one-time-code MACs,
TOTP (RFC 6238) and the access-token claims the domain grants. Tokens are signed and verified
only by :mod:`services.runtime.tokens` (one implementation in the repository).

Everything here is synchronous. ``hash_password``/``verify_password`` cost ~50 ms of CPU and
19 MiB of memory each by design: async callers must run them in a worker thread
(``await asyncio.to_thread(hash_password, pw)``), never on the event loop.

"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

from contracts.auth import Role
from contracts.types import GuardianRole

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


def source_key(pepper: bytes, device: str, ip: str) -> str:
    """Keyed hash of where a login comes from (device name and client address): the key of
    its own throttle window. It marks no device as known: only a device token does
    (``domain.devices``)."""
    return hmac.new(pepper, f"source\x1f{device}\x1f{ip}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def hash_ip(pepper: bytes, ip: str) -> str:
    """Keyed hash of an IP address: lets the owner compare logins without storing the IP."""
    return hmac.new(pepper, ip.encode(), hashlib.sha256).hexdigest()[:32]


# --- TOTP (RFC 6238) ------------------------------------------------------------------------
# The HOTP/TOTP arithmetic is the ``cryptography`` package's (already the signer of every access
# token, services.runtime.tokens), not ours. SHA-1, 6 digits and 30 s are what authenticator
# apps implement; the secret is 160 bits (RFC 4226 section 4 asks for at least 128).

TOTP_STEP_SECONDS = 30
TOTP_DIGITS = 6
TOTP_ISSUER = "SchoolCard"
_TOTP_CODE = re.compile(r"[0-9]{6}")


def new_totp_secret() -> str:
    """160 random bits, base32 without padding (what authenticator apps accept)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _b32decode(secret_b32: str) -> bytes:
    padded = secret_b32.upper() + "=" * (-len(secret_b32) % 8)
    return base64.b32decode(padded)


def _totp(secret_b32: str, digits: int = TOTP_DIGITS) -> TOTP:
    return TOTP(_b32decode(secret_b32), digits, SHA1(), TOTP_STEP_SECONDS)


def totp_step(now: datetime) -> int:
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def totp_code(secret_b32: str, now: datetime, *, digits: int = TOTP_DIGITS) -> str:
    """The code an authenticator app shows at ``now`` (tests and tools; the service never
    needs to produce one)."""
    return _totp(secret_b32, digits).generate(int(now.timestamp())).decode()


def match_totp(secret_b32: str, code: str, now: datetime, *, window: int = 1) -> int | None:
    """The time step within +-``window`` steps of ``now`` whose code is ``code``, else None.
    Every candidate step is checked with the library's constant-time comparison, matched or
    not. Callers refuse a step not newer than the last one they accepted (no replays)."""
    if not _TOTP_CODE.fullmatch(code):
        return None
    totp = _totp(secret_b32)
    current = totp_step(now)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        try:
            totp.verify(code.encode(), step * TOTP_STEP_SECONDS)
        except InvalidToken:
            continue
        if found is None:
            found = step
    return found


def totp_provisioning_uri(secret_b32: str, account_name: str) -> str:
    """``otpauth://totp/SchoolCard:<account>?secret=...`` for a QR code (Key Uri Format)."""
    return _totp(secret_b32).get_provisioning_uri(account_name, TOTP_ISSUER)


# --- access-token claims (what the domain decides; signing is services.runtime.tokens) ----

# One vocabulary with the wire: the account roles and guardian roles are the contracts' enums.
AccessRole = Role
ChildRole = GuardianRole


@dataclass(frozen=True)
class ChildClaim:
    contract: str
    role: ChildRole


@dataclass(frozen=True)
class AccessClaims:
    """What the domain grants a session; the token itself (``iss``/``iat``/``exp``/``jti``,
    Ed25519 signature) is made by :func:`services.runtime.tokens.issue_access_token`, the one
    implementation every service verifies against."""

    sub: str
    sid: str
    role: AccessRole
    children: tuple[ChildClaim, ...] = ()
    school_id: str | None = None
    operator_id: str | None = None
