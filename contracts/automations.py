"""What an automation's workflow starts with, and the run it asks the catalog to launch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AUTOMATION_WORKFLOW = "AutomationRun"


@dataclass
class AutomationInput:
    # The saved automation (``identifier``, ``invoke`` …) and the event that triggered it: user
    # data the templates read, so kept as the catalog stores it.
    automation: dict[str, Any]
    event: dict[str, Any]
    depth: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AutomationLaunch:
    """The run an automation starts (``gantry.launch_automation_run``)."""

    action: str
    entity: str | None
    inputs: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    trigger: dict[str, Any] = field(default_factory=dict)
