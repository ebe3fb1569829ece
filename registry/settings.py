"""Registry settings, from environment variables prefixed ``REGISTRY_`` (docs/design.md §4, §8).

Nothing reads the environment but :meth:`Settings.from_env`; everything else receives a ``Settings`` value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    auto_migrate: bool = Field(
        default=True,
        description="Bring the database schema up to date when the app starts (set false where deployments run "
        "`hr-registry db upgrade` themselves).",
    )
    catalog_path: Path = Field(default=DEFAULT_CATALOG, description="The recognized-item catalog YAML.")
    public_base_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL the registry is reached at (links, fullUrls)."
    )
    host: str = "127.0.0.1"
    port: int = 8000

    # ---------------------------------------------------------------- patient identity (docs/design.md §4)
    identity_secret: str | None = Field(
        default=None,
        description="HMAC key for the master patient key. Default: generated once and kept in var_dir/keys/. "
        "It must never change for a running region: every link between hospitals depends on it.",
    )
    national_id_systems: dict[str, str] = Field(
        default={
            "https://hr-registry.org.cn/fhir/sid/cn-resident-id": "resident-id",
            "https://hr-registry.org.cn/fhir/sid/passport": "passport",
            "https://hr-registry.org.cn/fhir/sid/hk-macao-permit": "hk-macao-permit",
            "https://hr-registry.org.cn/fhir/sid/taiwan-permit": "taiwan-permit",
            "https://hr-registry.org.cn/fhir/sid/foreigner-permanent-residence": "foreigner-permanent-residence",
        },
        description="Identifier systems that carry a national identifier, each with its ID type. Values are "
        "never stored in plaintext: only their keyed hash and a masked form.",
    )

    # ---------------------------------------------------------------- ownership (docs/design.md §6)
    hr_mark_codes: list[str] = Field(
        default=["HR", "京HR", "津HR", "冀HR", "鲁HR"],
        description="Codes of the HR-mark CodeSystem that mark a result recognizable; any other code is no mark.",
    )
    shared_identifier_systems: list[str] = Field(
        default=["urn:dicom:uid", "urn:ietf:rfc:3986"],
        description="Identifier systems no organization owns (world-unique ids); every other system a hospital "
        "writes must be one of its declared namespaces.",
    )

    # ---------------------------------------------------------------- security and limits (docs/design.md §6)
    token_ttl_seconds: int = Field(default=900, ge=30, le=86_400, description="Access token lifetime.")
    client_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long a server process reuses what it read about a client (disabled, secret rotated, kind, "
        "organization, scopes) when it checks a token or a page session: a change made elsewhere reaches every "
        "server within this many seconds. 0 reads the client on every request.",
    )
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    max_bundle_entries: int = Field(default=1000, ge=1, description="Largest Bundle accepted.")
    rate_limit_per_second: float = Field(default=100.0, ge=0, description="Sustained requests/s per client; 0 = off")
    rate_limit_burst: int = Field(default=300, ge=1, description="Requests a client may send at once.")
    cds_lookback_days: int = Field(default=30, ge=1, le=3650, description="patient-view reminder look-back (days)")
    default_page_size: int = Field(default=50, ge=1, le=1000)
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=7 * 86_400, description="Web page sign-in lifetime.")
    cookie_secure: bool = Field(
        default=False,
        description="Mark the pages' session cookie Secure (set true wherever the registry is served over HTTPS).",
    )
    max_page_size: int = Field(default=500, ge=1, le=5000)
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Origins of browser apps (SMART web apps) let in by CORS, comma-separated "
        "(https://app.example.cn,http://localhost:3000). Empty (the default): no CORS headers at all.",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, sep, rest = origin.partition("://")
            if origin != "*" and (scheme not in ("http", "https") or not sep or not rest or "/" in rest):
                raise ValueError(f"a CORS origin is scheme://host[:port] (or *), not {origin!r}")
        return value

    search_max_params: int = Field(
        default=40, ge=1, description="Parameters one search may carry (each is a predicate); more is 400 too-costly."
    )
    search_max_values: int = Field(
        default=100, ge=1, description="Comma-separated (OR-ed) values one search parameter may carry."
    )
    search_max_length: int = Field(
        default=8192, ge=256, description="Characters all parameters of one search may add up to (names and values)."
    )
    statement_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest a request's database statement may run before it is cancelled (PostgreSQL: "
        "statement_timeout; SQLite: a progress handler); the request then answers 503 with Retry-After. 0 = none.",
    )
    rate_limit_max_keys: int = Field(
        default=10_000,
        ge=1,
        description="Rate-limit buckets one process keeps at most (per client, per claimed client id at /auth/token, "
        "per sign-in account); idle ones expire once refilled, the least recently used go first past this.",
    )
    shared_state_url: str | None = Field(
        default=None,
        description="What several registry nodes of one region must share, when they do: a Redis URL "
        "(redis://host:6379/0) holding the rate-limit counts (a client's rate is its rate across nodes) and the "
        "read-your-writes marks of replica reads. Unset: each process keeps its own (one machine). A node that "
        "cannot reach it counts rates on its own and reads from the primary until it is back.",
    )
    database_replica_url: str | None = Field(
        default=None,
        description="A streaming standby of the PostgreSQL primary for FHIR reads and searches (off when unset). "
        "A client that just wrote reads from the primary until the standby has replayed its write (its WAL "
        "position, kept in REGISTRY_SHARED_STATE_URL across nodes); the read's audit rows go to the primary.",
    )
    read_your_writes_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="How long a client's last write position is kept for replica reads."
    )
    readiness_timeout_seconds: float = Field(
        default=2.0, gt=0, le=30, description="How long GET /readyz waits for the database before answering 503."
    )

    # ---------------------------------------------------------------- FHIR R4 Subscriptions (rest-hook)
    subscription_allow_http_loopback: bool = Field(
        default=False,
        description="Accept Subscription endpoints on plain http to 127.0.0.1 / localhost / ::1 (demo, tests); "
        "otherwise every endpoint must be https.",
    )
    subscription_delivery: bool = Field(
        default=True, description="Run the notification worker in this process (false: another process sends)."
    )
    subscription_max_attempts: int = Field(
        default=6, ge=1, le=100, description="Attempts of one notification before it is a dead letter."
    )
    subscription_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; doubled at each failure of the same notification."
    )
    subscription_retry_max_seconds: float = Field(default=600.0, gt=0, description="Longest retry delay.")
    subscription_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Longest one notification request may take (connect and answer)."
    )
    subscription_poll_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often the worker looks for retries that came due."
    )

    # ---------------------------------------------------------------- patient notifications (docs/notifications.md)
    notify_gateway_url: str | None = Field(
        default=None,
        description="Where the notification gateway (SMS provider, the city app's push service) takes messages: "
        "POST JSON, bearer secret. Unset: messages are queued and wait until it is set.",
    )
    notify_gateway_secret: str | None = Field(default=None, description="Bearer secret sent to the gateway.")
    notify_max_attempts: int = Field(default=8, ge=1, le=100, description="Attempts before a dead letter.")
    notify_backoff_seconds: float = Field(default=5.0, gt=0, description="First retry delay; doubled each time.")
    notify_max_backoff_seconds: float = Field(default=3600.0, gt=0, description="Longest retry delay.")
    notify_batch_size: int = Field(default=200, ge=1, le=5000, description="Messages claimed per pass.")
    notify_concurrency: int = Field(default=8, ge=1, le=64, description="Messages in flight at once per process.")
    notify_timeout_seconds: float = Field(default=5.0, gt=0, le=60, description="One attempt's HTTP timeout.")
    notify_poll_seconds: float = Field(default=1.0, gt=0, le=60, description="Pause while nothing is due.")
    notify_lease_seconds: float = Field(
        default=300.0, gt=0, description="A claimed batch is due again after this long if its process died."
    )

    # ---------------------------------------------------------------- DICOMweb gateway (registry.services.imaging)
    dicomweb_endpoints: str | None = Field(
        default=None,
        description="The PACS the DICOMweb gateway may forward to, as a JSON object or the path of a JSON file: "
        'Endpoint id (or the Endpoint\'s exact address) -> {"organization": the hospital whose PACS it is, '
        '"base": the DICOMweb root the registry calls, optional "authorization" header or '
        '"username"/"password", "timeout", "connect_timeout", "read_timeout", "thumbnail"}. '
        "Unset: no study's images are reachable through the registry (the hospitals' Endpoint addresses are never "
        "fetched as such).",
    )
    dicomweb_decision_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long one process reuses an access decision on a study for the next frames of the same "
        "principal: a consent change or a withdrawn study reaches an open viewer within this many seconds. 0 decides "
        "every request anew.",
    )
    dicomweb_image_max_age_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="Cache-Control max-age of rendered frames and thumbnails (private: the browser only; never under "
        "break-glass). 0 = no-store.",
    )

    @field_validator("notify_gateway_url")
    @classmethod
    def _check_gateway(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("REGISTRY_NOTIFY_GATEWAY_URL must be an http(s) URL")
        return value or None

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

    @property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"
