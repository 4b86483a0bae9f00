"""auth settings (env prefix ``AUTH_``); required values fail at start."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings
from services.runtime.tokens import public_keys, signing_key

MIN_PEPPER_CHARS = 16


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_", extra="ignore")

    mongo_db: str = "schoolcard_auth"
    private_key: SecretStr = Field(description="AUTH_PRIVATE_KEY: PEM of the Ed25519 key that "
                                   "signs access tokens (required; only auth holds it). Its "
                                   "public half must be among SCHOOLCARD_AUTH_PUBLIC_KEYS here "
                                   "and on every service; tokens name it by its thumbprint "
                                   "(kid).")
    pepper: SecretStr = Field(description="AUTH_PEPPER: server secret keying the "
                              "one-time-code MACs, activation-code MACs, login throttles and IP "
                              "hashes (kept out of the database; at least 16 characters, e.g. "
                              "`openssl rand -base64 32`). Required: auth does not start "
                              "without it. Independent of the signing key, so rotating that "
                              "key leaves every stored MAC valid.")
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

    session_sweep_interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="AUTH_SESSION_SWEEP_INTERVAL_S: how often auth "
        "ends the sessions whose refresh lifetime ran out (idle 20 min or 12 h after login) "
        "and tells notify (SessionEnded reason expired: their push tokens go).")
    session_sweep_batch: int = Field(default=200, ge=1, le=10_000, description="AUTH_SESSION_"
                                     "SWEEP_BATCH: most sessions ended per sweep (one "
                                     "transaction each).")

    phone_countries: list[str] = Field(
        default=["+7"], min_length=1, description="AUTH_PHONE_COUNTRIES: country calling "
        "codes (with +, JSON list) of the phones auth registers and sends reset codes to; keep "
        "it equal to notify's NOTIFY_SMS_CODE_COUNTRIES. Other phones are refused "
        "phone_country_not_served instead of being accepted and never sent a code.")

    consumer_batch_max: int = Field(default=1, ge=1, le=5_000, description="AUTH_CONSUMER_"
                                    "BATCH_MAX: one transaction per message by default: auth "
                                    "hashes passwords before its transactions (tens of ms "
                                    "each), which a batch's transaction would hold open, and "
                                    "its traffic is small.")

    @field_validator("phone_countries")
    @classmethod
    def _country_codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            if not (code.startswith("+") and code[1:].isdigit() and 1 <= len(code) - 1 <= 3):
                raise ValueError(f"{code!r} is not a country calling code such as +7")
        return codes

    @field_validator("pepper")
    @classmethod
    def _pepper_is_a_secret(cls, pepper: SecretStr) -> SecretStr:
        if len(pepper.get_secret_value()) < MIN_PEPPER_CHARS:
            raise ValueError(f"must be at least {MIN_PEPPER_CHARS} characters")
        return pepper

    @model_validator(mode="after")
    def _signing_key_is_verifiable(self) -> Settings:
        """Auth verifies the tokens of its own commands with the public keys every service
        holds: a signing key missing from them would issue tokens nobody accepts."""
        try:
            kid, _ = signing_key(self.private_key.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"AUTH_PRIVATE_KEY is not an Ed25519 private key in PEM: {exc}"
                             ) from None
        if kid not in public_keys(self.infra.verification_keys()):
            raise ValueError(f"the public half of AUTH_PRIVATE_KEY (kid {kid}) is not in "
                             "SCHOOLCARD_AUTH_PUBLIC_KEYS / SCHOOLCARD_AUTH_PUBLIC_KEY: add it "
                             "there (on every service) before auth signs with it")
        return self

    def pepper_bytes(self) -> bytes:
        return self.pepper.get_secret_value().encode()
