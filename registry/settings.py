"""Registry settings, from environment variables prefixed ``REGISTRY_`` (DESIGN.md §4, §8).

Nothing reads the environment but :meth:`Settings.from_env`; everything else receives a ``Settings`` value.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = PROJECT_ROOT / "data" / "recognized_items.yaml"


class Settings(BaseSettings):
    """All knobs of the registry. ``var_dir`` holds the SQLite file, signing keys and other local state."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    var_dir: Path = Field(default=Path("var"), description="Local state: SQLite file, keys, logs.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is the embedded SQLite file var_dir/registry.sqlite3. "
        "Production: postgresql+psycopg://user@host/db",
    )
    catalog_path: Path = Field(default=DEFAULT_CATALOG, description="The recognized-item catalog YAML.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL the registry is reached at (links, fullUrls)."
    )
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @classmethod
    def from_env(cls) -> Settings:
        return cls()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'registry.sqlite3').resolve()}"

    @property
    def fhir_base_url(self) -> str:
        return f"{self.public_base_url}/fhir"
