"""auth settings (env prefix ``AUTH_``); required values fail at start."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.runtime.logs import get_logger
from services.runtime.settings import ServiceSettings

log = get_logger("schoolcard.auth.settings")


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    mongo_db: str = "schoolcard_auth"
    private_key: SecretStr = Field(description="AUTH_PRIVATE_KEY: PEM of the Ed25519 key that "
                                   "signs access tokens (required; its public half is "
                                   "SCHOOLCARD_AUTH_PUBLIC_KEY on every service).")
    pepper: SecretStr | None = Field(default=None, description="AUTH_PEPPER: server secret "
                                     "keying the one-time-code MACs, activation-code MACs "
                                     "and IP hashes (kept out of the database). Required in "
                                     "production; without it a pepper is derived from the "
                                     "private key and a warning is logged.")
    refresh_reuse_grace_s: float = Field(
        default=30.0, ge=0, le=300, description="AUTH_REFRESH_REUSE_GRACE_S: seconds after a "
        "refresh during which the refresh token it replaced may come back once more (a client "
        "retrying after a lost reply) and is answered with a new token instead of revoking "
        "the session; 0 revokes on any reuse (OAuth 2.0 Security BCP, refresh token rotation).")
    outbox_carries_secrets: bool = Field(default=True, description="AUTH_OUTBOX_CARRIES_"
                                         "SECRETS: one-time codes and TOTP secrets pass through "
                                         "the outbox: published records are deleted whatever "
                                         "AUTH_OUTBOX_DELETE_PUBLISHED says, parked ones keep no "
                                         "payload; keep it on.")
    session_retention_days: int = Field(default=30, ge=1, description="AUTH_SESSION_RETENTION_"
                                        "DAYS: sessions are deleted this long after their last "
                                        "use or revocation (TTL index); a session is unusable "
                                        "after 12 hours, so this only bounds the history.")
    login_throttle_retention_days: int = Field(default=1, ge=1, description="AUTH_LOGIN_"
                                               "THROTTLE_RETENTION_DAYS: failure windows of "
                                               "unknown login identifiers are deleted this long "
                                               "after their last failure (the window is an "
                                               "hour; TTL index).")

    consumer_batch_max: int = Field(default=1, ge=1, le=5_000, description="AUTH_CONSUMER_"
                                    "BATCH_MAX: one transaction per message by default: auth "
                                    "hashes passwords before its transactions (tens of ms "
                                    "each), which a batch's transaction would hold open, and "
                                    "its traffic is small.")

    def pepper_bytes(self) -> bytes:
        if self.pepper is not None and self.pepper.get_secret_value():
            return self.pepper.get_secret_value().encode()
        log.warning("AUTH_PEPPER IS NOT SET: deriving the pepper from AUTH_PRIVATE_KEY. Set "
                    "AUTH_PEPPER to its own secret outside development.")
        return hmac.new(self.private_key.get_secret_value().encode(), b"schoolcard-auth-pepper",
                        hashlib.sha256).digest()
