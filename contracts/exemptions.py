"""The exemption expiry workflow's input and names (the API starts it, the worker runs it).

Kept free of heavy imports: the workflow sandbox imports it. New fields need defaults so
running histories stay decodable.
"""

from __future__ import annotations

from dataclasses import dataclass

EXPIRY_WORKFLOW = "ExemptionExpiry"
EXPIRE_ACTIVITY = "gantry.expire_exemption"


def expiry_workflow_id(exemption_id: str) -> str:
    return f"exemption:{exemption_id}"


@dataclass
class ExemptionExpiry:
    """One exemption's timer: which exemption, where, and when it ends (ISO 8601, UTC)."""

    exemption_id: str
    blueprint: str
    scorecard: str
    expires_at: str
