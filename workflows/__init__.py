"""Deterministic workflow code: action runs, approvals, TTL timers, automations.

``ALL_WORKFLOWS`` is what the worker registers.
"""

from __future__ import annotations

ALL_WORKFLOWS: list[type] = []
