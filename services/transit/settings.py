from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings

DEFAULT_RULES = Path(__file__).resolve().parent / "fare_rules.json"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSIT_", extra="ignore")

    mongo_db: str = "schoolcard_transit"
    fare_rules_file: Path = Field(default=DEFAULT_RULES, description="Fare rules loaded at "
                                  "start for operators without rules set by SetFareRules.")
    operator_aliases: dict[str, str] = Field(
        default={"izhevsk": "izhevsk-gortrans"},
        description="Operator ids validators send -> operator ids of the rules (JSON object).")
    reminder_every_s: float = Field(default=3600.0, gt=0, description="How often concessions "
                                    "are scanned for the expiry reminder.")
    reminder_batch: int = Field(default=500, ge=1, description="Cards reminded per scan.")
    ride_retention_days: int = Field(default=90, ge=1, description="Ride history lines "
                                     "(location data) are deleted this long after they were "
                                     "recorded (TTL index).")
