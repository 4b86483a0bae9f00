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
    outbox_prune_every_s: float = Field(default=2.0, gt=0, description="How often published "
                                        "records (one-time codes among them) are deleted from "
                                        "auth_outbox.")

    def pepper_bytes(self) -> bytes:
        if self.pepper is not None and self.pepper.get_secret_value():
            return self.pepper.get_secret_value().encode()
        log.warning("AUTH_PEPPER IS NOT SET: deriving the pepper from AUTH_PRIVATE_KEY. Set "
                    "AUTH_PEPPER to its own secret outside development.")
        return hmac.new(self.private_key.get_secret_value().encode(), b"schoolcard-auth-pepper",
                        hashlib.sha256).digest()
