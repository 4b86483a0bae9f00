from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore")

    mongo_db: str = "schoolcard_access"
    sweep_interval_s: float = Field(default=30.0, gt=0, description="How often absence "
                                    "detection and end-of-day closing look for due work.")
    sweep_lookback_days: int = Field(default=2, ge=0, le=31, description="Past local days the "
                                     "sweep still catches up on (after a long outage).")
    sweep_batch: int = Field(default=100, ge=1, le=5000, description="Students per sweep "
                             "transaction (kept small: the dev database serialises them).")
    sweep_max_lag: int = Field(default=200, ge=0, description="The attendance checks wait "
                               "while more gate taps than this are not yet consumed (after an "
                               "outage, a backlog would otherwise make present children "
                               "absent).")
    attendance_retention_days: int = Field(default=400, ge=1, description="Attendance days "
                                           "are deleted this long after their last change "
                                           "(TTL index): a school year and its summer.")
    gate_tap_retention_days: int = Field(default=90, ge=1, description="Gate taps (where and "
                                         "when a child passed) are deleted this long after "
                                         "they were recorded (TTL index).")
