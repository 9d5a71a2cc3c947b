"""What every benchmark shares: percentiles, the stack's settings, writing the results file."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

ADMIN_TOKEN = "bench-admin-token"
SERVICE_TOKEN = "bench-service-token"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (inclusive method); a single sample is every percentile."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def stack_env(
    work: Path, temporal_address: str, api_port: int, task_queue: str, **extra: Any
) -> dict[str, str]:
    """GANTRY_* variables for an API and a worker on SQLite in ``work``."""
    from devtools.processes import gantry_env

    return gantry_env(
        data_dir=work,
        database_url=f"sqlite:///{work / 'catalog.db'}",
        temporal_address=temporal_address,
        task_queue=task_queue,
        api_url=f"http://127.0.0.1:{api_port}",
        admin_token=ADMIN_TOKEN,
        service_token=SERVICE_TOKEN,
        secret_key="bench-secret-key",
        **extra,
    )


def write_results(path: Path, header: str, table: str, footer: str = "") -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(header + table + footer)
