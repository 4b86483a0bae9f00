"""notify's settings (env prefix ``NOTIFY_``); no other notify module reads the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    mongo_db: str = "schoolcard_notify"
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for e-mail.")
    smtp_port: int = Field(default=2525, ge=1, le=65535, description="SMTP port.")
    smtp_tls: bool = Field(default=False, description="STARTTLS to the SMTP server.")
    smtp_username: str = Field(default="", description="SMTP login; empty: no AUTH.")
    smtp_password: str = Field(default="", description="SMTP password; never logged.")
    mail_from: str = Field(default="SchoolCard <no-reply@schoolcard.local>",
                           description="From header of every e-mail.")
    sms_url: str = Field(default="http://127.0.0.1:8025/sms",
                         description="HTTP endpoint of the SMS provider (POST JSON).")
    push_url: str = Field(default="http://127.0.0.1:8025/push",
                          description="HTTP endpoint of the push provider (POST JSON).")
    provider_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one provider "
                                      "call (SMTP or HTTP).")
    send_max_attempts: int = Field(default=5, ge=1, description="Attempts per message and "
                                   "channel before it goes dead (push then falls back to SMS).")
    send_backoff_ms: int = Field(default=1_000, ge=1, description="First retry delay; doubles "
                                 "per attempt.")
    send_backoff_max_ms: int = Field(default=300_000, ge=1, description="Cap of the delay.")
    send_poll_ms: int = Field(default=500, ge=10, description="How often the sender looks for "
                              "due messages when nothing woke it.")
    send_batch: int = Field(default=50, ge=1, description="Messages claimed per sender pass.")
    send_concurrency: int = Field(default=8, ge=1, description="Provider calls in flight.")
    send_lease_s: float = Field(default=60.0, gt=0, description="How long a claimed message "
                                "is reserved for this instance (a crashed sender's claims "
                                "expire after it).")
    sms_code_countries: list[str] = Field(
        default=["+7"], description="Phone prefixes one-time codes may be sent to (SMS pumping "
        "buys premium-rate numbers abroad): Russia only by default.")
    sms_codes_per_number_hour: int = Field(default=5, ge=1, description="One-time codes one "
                                           "number may receive in a UTC hour.")
    sms_codes_per_number_day: int = Field(default=10, ge=1, description="One-time codes one "
                                          "number may receive in a UTC day.")
    sms_codes_per_minute: int = Field(default=600, ge=1, description="One-time codes the "
                                      "service sends in a minute, all numbers together.")
    school_time_zone: str = Field(default="Europe/Samara", description="Time zone of the "
                                  "journey-to-school day (the schools' zone).")
    digest_every_s: float = Field(default=60.0, gt=0, description="Period of the daily-digest "
                                  "tick.")
    journal_retention_days: int = Field(default=180, ge=1, description="Messages (the journal) "
                                        "older than this are deleted (TTL index).")
    journey_retention_days: int = Field(default=90, ge=1, description="Journeys (a child's "
                                        "rides and gate passages of a day: location data) are "
                                        "deleted this long after their last change (TTL "
                                        "index).")
