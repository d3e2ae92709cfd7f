"""Configuration: one `Settings` object, built once at start-up and passed down.

Every field reads `TASK_MCP_<FIELD>` from the environment; CLI flags override. Nothing here runs
at import time, so tests construct `Settings(...)` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from task_mcp.errors import ConfigError

Algorithm = Literal["EdDSA", "ES256", "ES512", "RS256", "PS256"]
Toolset = Literal["tasks", "workspaces", "history", "agents"]
TOOLSETS: tuple[Toolset, ...] = ("tasks", "workspaces", "history", "agents")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASK_MCP_", extra="ignore", frozen=True)

    database_url: str | None = None
    """Any SQLAlchemy URL; default: a SQLite file in the user's data directory."""
    db_pool_size: int = Field(default=5, ge=1)
    """PostgreSQL: connections each server process keeps open."""
    db_max_overflow: int = Field(default=10, ge=0)
    """PostgreSQL: extra connections opened under load beyond db_pool_size."""
    db_pool_timeout_seconds: float = Field(default=10, gt=0, le=300)
    """PostgreSQL: how long a call waits for a free pooled connection before answering `unavailable`."""
    db_lock_timeout_seconds: float = Field(default=5, gt=0, le=60)
    """How long a statement waits for another transaction's lock (SQLite: busy timeout) before the
    call is retried; after 5 attempts the call answers `unavailable`."""
    better_auth_url: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    algorithms: Annotated[tuple[Algorithm, ...], NoDecode] = ("EdDSA",)
    token: SecretStr | None = None
    token_file: Path | None = None
    better_auth_session_token: SecretStr | None = None
    read_only: bool = False
    toolsets: Annotated[tuple[Toolset, ...], NoDecode] = ()
    """Toolsets to offer, from tasks, workspaces, history, agents; empty means all of them."""
    organizations_claim: str = Field(default="organizations", min_length=1)
    """The token claim listing the caller's Better Auth organizations: [{id, slug, role, name?}]."""
    resource_url: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    retention_days: int = Field(default=30, ge=1)
    history_days: int = Field(default=90, ge=1)
    """How long the change journal keeps changes; also how long an unseen member stays known."""
    max_tasks_per_workspace: int = Field(default=100_000, ge=1)
    """Tasks a workspace may hold, the trash included; a create or restore past it is `invalid_argument`."""
    leeway_seconds: int = Field(default=10, ge=0, le=30)
    jwks_cache_seconds: float = Field(default=300, gt=0)
    jwks_cooldown_seconds: float = Field(default=30, ge=0)
    http_timeout_seconds: float = Field(default=5, gt=0)
    http_max_connections: int = Field(default=500, ge=1)
    """HTTP: open connections served at once; beyond it a request is answered 503 at once."""
    http_request_timeout_seconds: float = Field(default=30, gt=0, le=3600)
    """HTTP: time a client has to send a whole request (headers and body) before the connection is closed."""
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """HTTP: Host header values accepted at /mcp (`host`, `host:port`, `host:*`; `*` turns the DNS-rebinding
    check off); empty means the SDK's localhost list."""
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """HTTP: Origin header values accepted at /mcp (`https://app.example.com`, `http://host:*`); empty means
    the SDK's localhost list. A request without Origin is always accepted."""

    @field_validator("algorithms", "allowed_hosts", "allowed_origins", "toolsets", mode="before")
    @classmethod
    def _split_comma_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _checks_issuer_and_audience(self) -> Settings:
        # A JWKS without an expected iss and aud would accept a token Better Auth made for anyone else.
        if self.jwks_url and not self.better_auth_url:
            missing = [f"TASK_MCP_{name.upper()}" for name in ("issuer", "audience") if not getattr(self, name)]
            if missing:
                raise ValueError(
                    f"TASK_MCP_JWKS_URL is set without {' and '.join(missing)}, so tokens from any issuer or for any "
                    "audience would be accepted. Set TASK_MCP_BETTER_AUTH_URL, or both TASK_MCP_ISSUER "
                    "and TASK_MCP_AUDIENCE"
                )
        return self

    @field_validator("better_auth_url", "jwks_url", "issuer", "resource_url", mode="after")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def offered_toolsets(self) -> tuple[Toolset, ...]:
        return tuple(t for t in TOOLSETS if t in self.toolsets) if self.toolsets else TOOLSETS

    @property
    def sqlalchemy_url(self) -> str:
        # No side effect: the default folder is made when the database is opened (`db.make_engine`).
        if self.database_url:
            return self.database_url
        return f"sqlite:///{default_data_dir() / 'tasks.db'}"

    @property
    def auth_base_url(self) -> str | None:
        return self.better_auth_url.rstrip("/") if self.better_auth_url else None

    @property
    def effective_jwks_url(self) -> str | None:
        if self.jwks_url:
            return self.jwks_url
        base = self.auth_base_url
        return f"{base}/api/auth/jwks" if base else None

    @property
    def effective_issuer(self) -> str | None:
        # Better Auth's JWT plugin signs iss = aud = the origin of its base URL.
        return self.issuer or self.auth_base_url

    @property
    def effective_audience(self) -> str | None:
        return self.audience or self.auth_base_url


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus CLI overrides, or raise one readable ConfigError."""
    try:
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}  # pydantic checks each
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a rule across fields: its message names the variables
            raise ConfigError(str(first["msg"]).removeprefix("Value error, ")) from None
        field = str(first["loc"][0])
        raise ConfigError(f"TASK_MCP_{field.upper()}: {first['msg']}") from None


def default_data_dir() -> Path:
    """Where the default SQLite file lives: the user's data directory for task-mcp."""
    return Path(platformdirs.user_data_dir("task-mcp", appauthor=False))
