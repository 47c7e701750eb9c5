"""Configuration: the one place that reads the environment.

Development is the default (``LLM_ENV=development``): with no database configured the service uses
an SQLite file under ``LLM_DATA_DIR`` (``./data``), and a JWT secret and an encryption key are
generated once into ``<data dir>/dev-secrets.json`` (mode 0600) and reused on every later start.
``LLM_ENV=production`` refuses to start when a secret is missing or weak, or no database is set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

from limits import parse as parse_limit
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = logging.getLogger("llm_service.settings")

ROLES: tuple[str, ...] = ("CLIENT", "STAFF", "ADMIN")

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_VENDOR_OVERRIDE = re.compile(r"^LLM_([A-Za-z0-9]+)_(BASE_URL|DEFAULT_MODEL)$", re.IGNORECASE)
DEV_SECRETS_FILE = "dev-secrets.json"
MIN_METRICS_TOKEN_CHARS = 16


class ConfigurationError(Exception):
    """A setting is missing or wrong; the message names the variable and what is wrong."""


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the service. Variable names are the platform's (see `.env.example`)."""

    model_config = SettingsConfigDict(
        env_file=None, case_sensitive=False, extra="ignore", populate_by_name=True
    )

    env: Literal["development", "production"] = Field("development", alias="LLM_ENV")
    host: str = Field("127.0.0.1", alias="LLM_SERVICE_HOST")
    port: int = Field(8085, alias="LLM_SERVICE_PORT", ge=1, le=65535)
    data_dir: Path = Field(Path("data"), alias="LLM_DATA_DIR")
    log_level: str = Field("INFO", alias="LOG_LEVEL")

    database_url: str | None = Field(None, alias="DATABASE_URL")
    db_host: str | None = Field(None, alias="DB_HOST")
    db_port: int = Field(5432, alias="DB_PORT")
    db_user: str = Field("postgres", alias="DB_USER")
    db_password: str = Field("", alias="DB_PASSWORD")
    db_name: str = Field("llm_service", alias="DB_NAME")
    # A fixed pool: connections opened above it are closed again on return, and opening one
    # costs more than waiting a moment for a free one.
    db_pool_size: int = Field(20, alias="DB_POOL_SIZE", ge=1)
    db_max_overflow: int = Field(0, alias="DB_MAX_OVERFLOW", ge=0)
    db_timeout_s: float = Field(5.0, alias="DB_TIMEOUT_S", gt=0)
    # Migrating (at start or `llm-service migrate`) waits this long for the database to accept
    # connections: podman < 4.6 ignores compose's `condition: service_healthy`.
    db_wait_s: float = Field(60.0, alias="DB_WAIT_S", ge=0)
    migrate_on_start: bool | None = Field(None, alias="LLM_MIGRATE_ON_START")

    jwt_secret: str | None = Field(None, alias="JWT_SECRET")
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field("HS256", alias="JWT_ALGORITHM")
    jwt_leeway_s: int = Field(30, alias="JWT_LEEWAY_S", ge=0, le=300)
    jwt_user_id_claim: str = Field("user_id", alias="JWT_USER_ID_CLAIM")
    jwt_subject_claim: str = Field("sub", alias="JWT_SUBJECT_CLAIM")
    jwt_role_claim: str = Field("role", alias="JWT_ROLE_CLAIM")
    # When set, tokens must carry this `aud` / `iss`; unset, those claims are not checked.
    jwt_audience: str | None = Field(None, alias="JWT_AUDIENCE")
    jwt_issuer: str | None = Field(None, alias="JWT_ISSUER")

    encryption_key: str | None = Field(None, alias="ENCRYPTION_KEY")
    encryption_keys_previous: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="ENCRYPTION_KEYS_PREVIOUS"
    )

    # Shared counters for per-user rate limits across replicas (in-process without it).
    redis_url: str | None = Field(None, alias="REDIS_URL")
    rate_limit_chat: str = Field("100/hour", alias="RATE_LIMIT_CHAT")
    rate_limit_default: str = Field("1000/hour", alias="RATE_LIMIT_DEFAULT")
    max_concurrent_chats_per_user: int = Field(
        4, alias="LLM_MAX_CONCURRENT_CHATS_PER_USER", ge=1
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="CORS_ORIGINS"
    )
    max_body_bytes: int = Field(1_048_576, alias="LLM_MAX_BODY_BYTES", ge=1024)
    # The HTTP layer's bounds (see server.py): request head size and fields, time to send the
    # head and the body, idle keep-alive, open connections.
    max_header_bytes: int = Field(32_768, alias="LLM_MAX_HEADER_BYTES", ge=1024)
    max_headers: int = Field(100, alias="LLM_MAX_HEADERS", ge=8)
    header_timeout_s: float = Field(10.0, alias="LLM_HEADER_TIMEOUT_S", gt=0)
    body_timeout_s: float = Field(30.0, alias="LLM_BODY_TIMEOUT_S", gt=0)
    keepalive_timeout_s: int = Field(5, alias="LLM_KEEPALIVE_TIMEOUT_S", ge=1)
    max_connections: int = Field(1000, alias="LLM_MAX_CONNECTIONS", ge=1)
    context_messages: int = Field(20, alias="LLM_CONTEXT_MESSAGES", ge=0, le=100)
    max_message_chars: int = Field(32_000, alias="LLM_MAX_MESSAGE_CHARS", ge=1)
    max_history_items: int = Field(100, alias="LLM_MAX_HISTORY_ITEMS", ge=0)
    # A system prompt's size (a provider's default, a conversation's own); longer is 422.
    max_system_prompt_chars: int = Field(8_000, alias="LLM_MAX_SYSTEM_PROMPT_CHARS", ge=1,
                                         le=200_000)
    # Conversations (issue 15): how many a user may keep, how many messages one may hold (every
    # branch counted), and whether a title is made by the vendor after the first exchange.
    max_conversations: int = Field(2_000, alias="LLM_MAX_CONVERSATIONS", ge=1)
    max_conversation_messages: int = Field(1_000, alias="LLM_MAX_CONVERSATION_MESSAGES", ge=2,
                                           le=100_000)
    auto_titles: bool = Field(True, alias="LLM_AUTO_TITLES")
    # Hosts whose images a stored message or reply may show; any other image becomes a link.
    allowed_image_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="LLM_ALLOWED_IMAGE_HOSTS"
    )

    # The dated model catalogue (prices, defaults, request rules); None: the packaged one.
    model_catalog_file: Path | None = Field(None, alias="LLM_MODEL_CATALOG_FILE")
    metrics_enabled: bool = Field(False, alias="LLM_METRICS_ENABLED")
    metrics_token: str | None = Field(None, alias="LLM_METRICS_TOKEN")
    # Monthly budgets by role (0 = none): tokens and estimated USD.
    budget_tokens_client: int = Field(0, alias="LLM_BUDGET_TOKENS_CLIENT", ge=0)
    budget_tokens_staff: int = Field(0, alias="LLM_BUDGET_TOKENS_STAFF", ge=0)
    budget_tokens_admin: int = Field(0, alias="LLM_BUDGET_TOKENS_ADMIN", ge=0)
    budget_cost_usd_client: float = Field(0, alias="LLM_BUDGET_COST_USD_CLIENT", ge=0)
    budget_cost_usd_staff: float = Field(0, alias="LLM_BUDGET_COST_USD_STAFF", ge=0)
    budget_cost_usd_admin: float = Field(0, alias="LLM_BUDGET_COST_USD_ADMIN", ge=0)

    upstream_timeout_s: float = Field(60.0, alias="LLM_UPSTREAM_TIMEOUT_S", gt=0)
    upstream_connect_timeout_s: float = Field(5.0, alias="LLM_UPSTREAM_CONNECT_TIMEOUT_S", gt=0)
    upstream_max_retries: int = Field(2, alias="LLM_UPSTREAM_MAX_RETRIES", ge=0, le=10)
    # A vendor's answer (a whole stream included) larger than this is dropped: 502.
    max_vendor_response_bytes: int = Field(
        8 * 1024 * 1024, alias="LLM_MAX_VENDOR_RESPONSE_BYTES", ge=4096
    )
    # A stream's whole life after its first piece; past it the stream ends with provider_timeout.
    stream_timeout_s: float = Field(300.0, alias="LLM_STREAM_TIMEOUT_S", gt=0, le=3600)
    # A reply's hard cap in characters; each chat's cap is min(maxTokens * 8, this).
    max_reply_chars: int = Field(262_144, alias="LLM_MAX_REPLY_CHARS", ge=1, le=4_000_000)

    # LLM_<VENDOR>_BASE_URL and LLM_<VENDOR>_DEFAULT_MODEL for any registered vendor, keyed
    # "<vendor>.base_url" / "<vendor>.default_model" (the vendor registry has the defaults).
    vendor_overrides: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_vendor_overrides(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        found: dict[str, str] = {}
        for source in (os.environ, data):  # arguments win over the environment
            for name, value in source.items():
                match = _VENDOR_OVERRIDE.match(name) if isinstance(name, str) else None
                if match and isinstance(value, str) and value.strip():
                    found[f"{match[1].lower()}.{match[2].lower()}"] = value.strip()
        return {**data, "vendor_overrides": {**found, **data.get("vendor_overrides", {})}}

    @field_validator("vendor_overrides")
    @classmethod
    def _check_vendor_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for key, url in value.items():
            if key.endswith(".base_url") and not url.startswith(("http://", "https://")):
                vendor = key.split(".")[0].upper()
                raise ValueError(f"LLM_{vendor}_BASE_URL must be an http(s) URL, not {url!r}")
        return value

    @field_validator("encryption_keys_previous", "cors_origins", "allowed_image_hosts",
                     mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return _csv(value)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return not self.is_production

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: DATABASE_URL, else the DB_* parts, else the embedded SQLite file."""
        if self.database_url:
            return normalize_database_url(self.database_url)
        if self.db_host:
            password = f":{quote_plus(self.db_password)}" if self.db_password else ""
            return (
                f"postgresql+asyncpg://{quote_plus(self.db_user)}{password}"
                f"@{self.db_host}:{self.db_port}/{self.db_name}"
            )
        return f"sqlite+aiosqlite:///{(self.data_dir / 'llm-service.db').resolve()}"

    @property
    def database_configured(self) -> bool:
        return bool(self.database_url or self.db_host)

    def vendor_setting(self, vendor: str, name: str) -> str | None:
        """The operator's `LLM_<VENDOR>_<NAME>` (base_url, default_model), if set."""
        return self.vendor_overrides.get(f"{vendor}.{name}")


def normalize_database_url(url: str) -> str:
    """Accept the usual `postgres://` and `postgresql://` spellings and use the async drivers."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def validate_secrets(settings: Settings) -> None:
    """Raise ConfigurationError naming the first wrong variable."""
    secret = settings.jwt_secret
    if not secret:
        raise ConfigurationError("JWT_SECRET is not set: set it to a random string of 32+ bytes")
    if settings.is_production and len(secret.encode()) < 32:
        raise ConfigurationError(
            f"JWT_SECRET is {len(secret.encode())} bytes: production needs at least 32"
        )
    if not settings.encryption_key or not _HEX64.match(settings.encryption_key):
        raise ConfigurationError(
            "ENCRYPTION_KEY must be 64 hex characters (run `llm-service gen-key`)"
        )
    for i, key in enumerate(settings.encryption_keys_previous):
        if not _HEX64.match(key):
            raise ConfigurationError(
                f"ENCRYPTION_KEYS_PREVIOUS item {i + 1} must be 64 hex characters"
            )
    for name, value in (("RATE_LIMIT_CHAT", settings.rate_limit_chat),
                        ("RATE_LIMIT_DEFAULT", settings.rate_limit_default)):
        try:
            parse_limit(value)
        except ValueError:
            raise ConfigurationError(
                f"{name} must look like 100/hour or 10/minute, not {value!r}"
            ) from None
    if settings.is_production and settings.metrics_enabled and (
        len(settings.metrics_token or "") < MIN_METRICS_TOKEN_CHARS
    ):
        # /metrics shares the public port: without a token anyone could read the figures.
        raise ConfigurationError(
            f"LLM_METRICS_TOKEN must be set ({MIN_METRICS_TOKEN_CHARS}+ characters) when "
            "LLM_METRICS_ENABLED is true in production: /metrics is on the public port"
        )
    if settings.is_production and not settings.database_configured:
        raise ConfigurationError(
            "DATABASE_URL (or DB_HOST) is not set: production needs PostgreSQL"
        )


def _ensure_dev_secrets(settings: Settings) -> Settings:
    """Fill a missing JWT secret or encryption key from the 0600 dev-secrets file, made once."""
    if settings.jwt_secret and settings.encryption_key:
        return settings
    path = settings.data_dir / DEV_SECRETS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        action = "reusing development secrets from"
    else:
        stored = {"JWT_SECRET": secrets.token_urlsafe(48), "ENCRYPTION_KEY": secrets.token_hex(32)}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(stored, handle)
        action = "generated development secrets into"
    log.warning("%s %s (development only; set JWT_SECRET and ENCRYPTION_KEY to override)",
                action, path)
    return settings.model_copy(
        update={
            "jwt_secret": settings.jwt_secret or stored["JWT_SECRET"],
            "encryption_key": settings.encryption_key or stored["ENCRYPTION_KEY"],
        }
    )


def load_settings(**overrides: object) -> Settings:
    """Read the environment (overrides win), fill development secrets, and validate."""
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not settings.is_production:
        settings = _ensure_dev_secrets(settings)
    validate_secrets(settings)
    return settings
