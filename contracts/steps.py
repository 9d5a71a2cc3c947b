"""Inputs and results shared by every step activity.

Each step kind (``uses`` in an action) is one activity whose *name* is the step kind
(``github.workflow_dispatch``, ``jira.create_issue`` …). The action workflow calls it by name
with a :class:`StepInput` and gets a :class:`StepResult` back. Adding a field here must keep a
default, so running workflow histories stay decodable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepInput:
    run_id: str
    step_id: str
    uses: str
    # The step's rendered ``with`` block.
    params: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    # Step timeout in seconds as configured on the step (None: the step kind's default).
    timeout_seconds: float | None = None
    # This run's secret marker: only ``${secret:<marker>:NAME}`` placeholders are substituted.
    secret_marker: str = ""
    # The entity the run acts on, ``{blueprint}/{identifier}`` ("" when there is none): what a
    # stack Gantry creates is tagged with, and what it may later delete.
    entity: str = ""
    # The step's retry policy (maximum_attempts, initial_interval, backoff_coefficient,
    # maximum_interval; seconds), so a failed attempt can say what happens next.
    retry: dict[str, float] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """Stable across activity retries and worker restarts: one side effect per run step."""
        return f"{self.run_id}:{self.step_id}"


@dataclass
class Link:
    title: str
    url: str


@dataclass
class StepResult:
    outputs: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    # Catalog entities this step wrote, as {"blueprint": ..., "identifier": ..., "operation": ...}.
    affected_entities: list[dict[str, str]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


# ApplicationError types raised by step activities. A vendor's 4xx is non-retryable.
VENDOR_CLIENT_ERROR = "VendorClientError"
VENDOR_SERVER_ERROR = "VendorServerError"
STEP_FAILED = "StepFailed"
# The step kind's vendor has no settings on this worker: fails at once, never retried.
VENDOR_NOT_CONFIGURED = "VendorNotConfigured"
