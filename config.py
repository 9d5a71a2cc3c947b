"""Gantry's settings: one pydantic-settings model shared by the API, the worker and the CLI.

Every variable has the prefix ``GANTRY_``. Nothing is built at import time:
call :func:`get_settings` (cached) or construct :class:`Settings` directly in tests.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*$")
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(value: str) -> tuple[int, int]:
    """``"100/10s"`` as (100 requests, 10 seconds); ValueError when it is not ``N/period``."""
    match = RATE.match(value)
    if match is None or int(match.group(2) or 1) == 0:
        raise ValueError(f"{value!r} is not a rate like 100/10s (N per period of s, m or h)")
    return int(match.group(1)), int(match.group(2) or 1) * PERIOD_SECONDS[match.group(3)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANTRY_", extra="ignore", env_ignore_empty=True)

    environment: Literal["development", "production"] = Field(
        "development", description="development | production (any case; anything else is an error)"
    )
    data_dir: Path = Field(Path(".gantry"), description="where the embedded SQLite files live")
    database_url: str | None = Field(None, description="catalog database; SQLite in the data dir when unset")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = Field("http://127.0.0.1:8000", description="how workers reach the API")
    api_workers: int = Field(
        1,
        ge=1,
        description="API processes `python -m api` runs (uvicorn workers); more than one needs PostgreSQL",
    )

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

    pagerduty_token: SecretStr | None = Field(None, description="PagerDuty REST API token (data sources)")
    pagerduty_api_url: str = "https://api.pagerduty.com"

    kubernetes_kubeconfig: Path | None = Field(
        None, description="kubeconfig of the cluster kubernetes data sources read (else in-cluster config)"
    )
    kubernetes_context: str | None = Field(None, description="the kubeconfig context to use (else current)")
    aws_endpoint_url: str | None = Field(
        None, description="AWS endpoint of aws data sources (moto, LocalStack); boto3's default when unset"
    )
    sources_max_rate_limit_wait: float = Field(
        120.0,
        description="seconds a data-source pull waits out a vendor's rate limit (Retry-After) in place; "
        "a longer wait becomes a retry of the pull later",
    )

    webhook_secret: SecretStr | None = Field(None, description="HMAC key of http.request signatures")
    http_allowed_hosts: str = Field(
        "",
        description="comma-separated host names, IPs or CIDRs http.request may reach although they "
        "resolve to private, loopback, link-local or metadata addresses",
    )

    automation_max_depth: int = Field(
        3, description="automation-started runs may cause at most this many further automation hops"
    )
    vendor_poll_interval: float = Field(10.0, description="seconds between polls of a CI run or a stack")
    run_converge_after: float = Field(
        30.0, description="seconds a run may stay quiet before the API checks its workflow"
    )

    max_body_bytes: int = Field(1024 * 1024, gt=0, description="largest request body (bytes)")
    max_bulk_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="largest body of POST /v1/blueprints/{bp}/entities/bulk"
    )
    max_slack_body_bytes: int = Field(64 * 1024, gt=0, description="largest body of a /v1/slack/* request")
    max_json_depth: int = Field(32, gt=0, description="deepest nesting of a JSON request body")
    rate_limit_writes: str = Field(
        "100/10s", description="writes per token: N/period (10s, 1m, 1h); admins get ten times that"
    )
    rate_limit_launches: str = Field(
        "20/10s", description="action launches and retries per token; admins get ten times that"
    )

    web_session_ttl: int = Field(
        12 * 3600,
        ge=1,
        le=30 * 24 * 3600,
        description="seconds a web portal session lasts after sign-in (at most 30 days); then the "
        "browser signs in again",
    )

    @field_validator("rate_limit_writes", "rate_limit_launches")
    @classmethod
    def _rate_is_n_per_period(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("environment", mode="before")
    @classmethod
    def _environment_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment == "production":
            problems = production_secret_problems(self)
            if problems:
                raise ValueError("; ".join(problems))
            if self.resolved_database_url.startswith("sqlite"):
                raise ValueError("GANTRY_DATABASE_URL must point at PostgreSQL in production")
        if self.api_workers > 1 and self.resolved_database_url.startswith("sqlite"):
            # SQLite serialises writers and its reads lock nothing: relays and webhook processors
            # in several processes would contend on one file instead of sharing the work.
            raise ValueError(
                f"GANTRY_API_WORKERS={self.api_workers} needs PostgreSQL (GANTRY_DATABASE_URL): "
                "the embedded SQLite catalog is for one API process only"
            )
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


# Secrets production refuses when unset (required) or, when set, short or a known placeholder.
REQUIRED_SECRETS = ("service_token", "secret_key", "webhook_secret")
OPTIONAL_SECRETS = ("admin_token", "slack_signing_secret")
MIN_SECRET_LENGTH = 32
# Placeholders of examples and templates (compared without case, "-" or "_"): a value holding
# one was copied from documentation, not generated.
PLACEHOLDERS = ("changeme", "replaceme", "placeholder", "yoursecret", "yourtoken", "example", "default")


def _placeholder_in(value: str) -> str | None:
    squashed = value.lower().replace("-", "").replace("_", "")
    return next((p for p in PLACEHOLDERS if p in squashed), None)


def production_secret_problems(settings: Settings) -> list[str]:
    """Why these settings' secrets are unfit for production, one message per variable."""
    problems = []
    seen: dict[str, str] = {}
    for name in REQUIRED_SECRETS + OPTIONAL_SECRETS:
        variable = f"GANTRY_{name.upper()}"
        value = settings.secret(name)
        if value is None:
            if name in REQUIRED_SECRETS:
                problems.append(f"{variable} must be set when GANTRY_ENVIRONMENT=production")
            continue
        placeholder = _placeholder_in(value)
        if len(value) < MIN_SECRET_LENGTH:
            problems.append(
                f"{variable} is {len(value)} characters; production needs at least {MIN_SECRET_LENGTH}"
                " (generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        elif placeholder is not None:
            problems.append(f"{variable} holds the placeholder '{placeholder}': set a generated secret")
        elif value in seen:
            problems.append(f"{variable} must differ from {seen[value]}")
        seen.setdefault(value, variable)
    return problems


@functools.cache
def get_settings() -> Settings:
    return Settings()
