"""docker-compose.yml and the Dockerfile stay in step with the code: real settings, real modules."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
# Production refuses secrets shorter than 32 characters, so these are realistic lengths.
REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "pw",
    "GANTRY_ADMIN_TOKEN": "admin-3b1f0c9e7d2a4f6b8c5e1d0a9f7b3c2e",
    "GANTRY_SERVICE_TOKEN": "service-8e2d4c6a0b9f1e3d5c7a9b0e2f4d6c8a",
    "GANTRY_SECRET_KEY": "key-5f7e9d1c3b2a4e6f8d0c2b4a6e8f0d1c",
    "GANTRY_WEBHOOK_SECRET": "webhook-1a3c5e7f9b0d2f4a6c8e0b1d3f5a7c9e",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _interpolate(value: str) -> str:
    """Compose's ${VAR:?msg} / ${VAR:-default} with REQUIRED_ENV as the environment."""
    pattern = re.compile(r"\$\{(\w+)(?::[?-]([^}]*))?\}")
    return pattern.sub(lambda m: REQUIRED_ENV.get(m.group(1), m.group(2) or ""), value)


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"postgres", "temporal", "temporal-ui", "migrate", "api", "worker"}
    assert compose["services"]["temporal-ui"]["ports"] == ["8233:8080"]
    assert _environment(compose["services"]["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_temporal_keeps_its_state_in_postgresql(compose: dict[str, Any]) -> None:
    temporal = _environment(compose["services"]["temporal"])
    assert (temporal["DB"], temporal["POSTGRES_SEEDS"]) == ("postgres12", "postgres")


def test_two_api_replicas_and_two_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "worker"):
        assert services[name]["deploy"]["replicas"] == 2, name
        assert "container_name" not in services[name], f"{name}: a fixed name allows one replica only"
    # One host port per replica: a single fixed port would stop the second replica from starting.
    [ports] = services["api"]["ports"]
    host, container = ports.split(":")
    first, last = (int(port) for port in host.split("-"))
    assert (last - first + 1, container) == (2, "8000")
    # The workers reach the replicas by the service's name, which Docker resolves to every one.
    assert _environment(services["worker"])["GANTRY_API_URL"] == "http://api:8000"


def test_each_replica_runs_several_processes_on_postgresql(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["command"] == ["python", "-m", "api"]
    env = {k: _interpolate(v) for k, v in _environment(api).items()}
    settings = Settings.model_validate(
        {k.removeprefix("GANTRY_").lower(): v for k, v in env.items() if k.startswith("GANTRY_")}
    )
    assert settings.api_workers == 2
    assert settings.resolved_database_url.startswith("postgresql")


def test_migrations_run_once_before_the_replicas_start(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["python", "-m", "api", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    condition = services["api"]["depends_on"]["migrate"]["condition"]
    assert condition == "service_completed_successfully"


def test_several_api_processes_refuse_sqlite() -> None:
    with pytest.raises(ValueError, match="GANTRY_API_WORKERS=2 needs PostgreSQL"):
        Settings(api_workers=2, database_url="sqlite:///catalog.db")
    assert Settings(api_workers=1, database_url="sqlite:///catalog.db").api_workers == 1


def test_every_gantry_variable_is_a_setting(compose: dict[str, Any]) -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    fields = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    used = {key for service in compose["services"].values() for key in _environment(service)}
    gantry = {key for key in used if key.startswith("GANTRY_")}
    assert gantry, "api and worker are configured through GANTRY_ variables"
    assert gantry - fields == set()


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_settings_are_valid_production_settings(compose: dict[str, Any], name: str) -> None:
    env = {k: _interpolate(v) for k, v in _environment(compose["services"][name]).items()}
    fields = {
        key.removeprefix("GANTRY_").lower(): value for key, value in env.items() if key.startswith("GANTRY_")
    }
    settings = Settings.model_validate(fields)  # the production validator refuses missing secrets
    assert settings.environment == "production"
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.temporal_address == "temporal:7233"
    assert settings.api_url == "http://api:8000"


def test_secrets_are_required_not_defaulted(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["api"])
    for name in ("GANTRY_ADMIN_TOKEN", "GANTRY_SERVICE_TOKEN", "GANTRY_SECRET_KEY", "GANTRY_WEBHOOK_SECRET"):
        assert env[name].startswith(f"${{{name}:?"), name


def test_startup_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "temporal", "api"):
        assert "healthcheck" in services[name], name
    assert services["temporal"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def _assert_command_is_real(command: list[str]) -> None:
    """Every ``module:attr``, ``-m module`` and ``from x import y`` in a command exists."""
    words = [w for part in command for w in shlex.split(part)]
    for i, word in enumerate(words):
        if re.fullmatch(r"[a-z_][\w.]*:[a-z_]\w*", word):
            module, attr = word.split(":")
            assert hasattr(importlib.import_module(module), attr), word
        if word == "-m":
            importlib.import_module(words[i + 1])
    for module, names in re.findall(r"from ([\w.]+) import ([\w, ]+)", " ".join(command)):
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"{module}.{name}"


def test_dockerfile_and_commands_reference_real_modules(compose: dict[str, Any]) -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the image runs as a non-root user"
    assert "pip install ." in text
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd, "the Dockerfile has an exec-form CMD"
    _assert_command_is_real(json.loads(cmd.group(1)))
    for name in ("migrate", "api", "worker"):
        command = compose["services"][name]["command"]
        _assert_command_is_real(command if isinstance(command, list) else [command])


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_validates_the_file() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, **REQUIRED_ENV},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_stack_runs_two_api_replicas_and_two_workers(tmp_path: Path) -> None:
    """Where Docker exists: build and start the stack, both replicas answer, four Gantry
    containers run; then take it down with its volumes."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    project = [*cli, "-f", str(COMPOSE), "-p", f"gantry-test-{os.getpid()}"]
    env = {**os.environ, **REQUIRED_ENV}
    try:
        up = subprocess.run(
            [*project, "up", "--build", "--detach", "--wait"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        for port in (8000, 8001):
            assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200, port
        running = subprocess.run(
            [*project, "ps", "--status", "running", "--format", "{{.Service}}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout.split()
        assert sorted(s for s in running if s in ("api", "worker")) == ["api", "api", "worker", "worker"]
    finally:
        subprocess.run([*project, "down", "--volumes"], capture_output=True, env=env, timeout=300)
