"""Gantry's settings: one pydantic-settings model shared by the API, the worker and the CLI.

Every variable has the prefix ``GANTRY_`` (see DESIGN §9). Nothing is built at import time:
call :func:`get_settings` (cached) or construct :class:`Settings` directly in tests.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANTRY_", extra="ignore", env_ignore_empty=True)

    environment: str = Field("development", description="development | production")
    data_dir: Path = Field(Path(".gantry"), description="where the embedded SQLite files live")
    database_url: str | None = Field(None, description="catalog database; SQLite in the data dir when unset")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = Field("http://127.0.0.1:8000", description="how workers reach the API")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    task_queue: str = "gantry"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    temporal_search_attributes: bool = Field(
        True,
        description="set Gantry's search attributes (off only for servers without them: the test server)",
    )

    admin_token: SecretStr | None = Field(None, description="bootstraps an admin user and this token")
    service_token: SecretStr | None = Field(None, description="the worker's token for the catalog API")
    secret_key: SecretStr | None = Field(None, description="protects secret action inputs")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    github_token: SecretStr | None = None
    github_api_url: str = "https://api.github.com"

    gitlab_url: str = "https://gitlab.com"
    gitlab_token: SecretStr | None = None

    jenkins_url: str | None = None
    jenkins_user: str | None = None
    jenkins_token: SecretStr | None = None

    jira_url: str | None = None
    jira_user: str | None = None
    jira_token: SecretStr | None = None

    webhook_secret: SecretStr | None = Field(None, description="HMAC key of http.request signatures")

    automation_max_depth: int = Field(
        3, description="automation-started runs may cause at most this many further automation hops"
    )
    vendor_poll_interval: float = Field(10.0, description="seconds between polls of a CI run or a stack")
    run_converge_after: float = Field(
        30.0, description="seconds a run may stay quiet before the API checks its workflow"
    )

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment == "production":
            missing = [
                name
                for name in ("service_token", "secret_key", "webhook_secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"GANTRY_{missing[0].upper()} must be set when GANTRY_ENVIRONMENT=production"
                )
            if self.resolved_database_url.startswith("sqlite"):
                raise ValueError("GANTRY_DATABASE_URL must point at PostgreSQL in production")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting, or None."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


@functools.cache
def get_settings() -> Settings:
    return Settings()
