from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.integrations import FoodCategory
from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WALLET_", extra="ignore")

    mongo_db: str = "schoolcard_wallet"
    parked_top_up_ttl_s: float = Field(default=24 * 3600, gt=0, description="How long a "
                                       "payment for a contract not opened yet waits for its "
                                       "card's issuance before it is rejected (unknown_contract).")
    parked_top_up_every_s: float = Field(default=60, gt=0, description="How often the expiry "
                                         "of parked payments is checked.")
    grace_meal_default: int = Field(default=0, ge=0, description="Grace-meal debt bound in "
                                    "kopecks for schools without their own setting (0: off).")
    bonus_excluded_categories: tuple[FoodCategory, ...] = Field(
        default=(FoodCategory.SWEETS, FoodCategory.FAST_FOOD),
        description="Menu categories bonus points never pay for and never accrue on (the "
        "school's counterpart of IRBIS SMART's tobacco rule: points reward meals, they do not "
        "promote sweets and fast food); a JSON list, [] allows every category.")
    bonus_expiry_every_s: float = Field(default=24 * 3600, gt=0, description="Period of the "
                                        "bonus-expiry tick (it also runs once at start).")
    scheduled_top_up_every_s: float = Field(default=300, gt=0, description="How often the "
                                            "scheduler looks for due dates of the autopay by "
                                            "date (it also runs once at start).")
    scheduled_top_up_catch_up_days: int = Field(default=3, ge=0, description="A due date "
                                                "missed while the service was down is still "
                                                "asked when it comes back if at most this many "
                                                "days old; after a longer outage nothing is "
                                                "asked until the next due date.")
