from pydantic_settings import SettingsConfigDict

from services.runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCESS_", extra="ignore")

    mongo_db: str = "schoolcard_access"
