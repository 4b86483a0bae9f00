from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore")

    mongo_db: str = "schoolcard_wallet"
    grace_meal_default: int = Field(default=0, ge=0, description="Grace-meal debt bound in "
                                    "kopecks for schools without their own setting (0: off).")
    bonus_expiry_every_s: float = Field(default=24 * 3600, gt=0, description="Period of the "
                                        "bonus-expiry tick (it also runs once at start).")
