"""Step errors with their context, and the step kinds of vendors that are not configured.

Every step activity the worker registers goes through :func:`with_context`. A failure becomes
one message naming the step kind, what it acted on, the attempt and what happens next, with a
hint for the known causes::

    http.request POST http://127.0.0.1:9/hook failed (attempt 3 of 5, next retry in 4 s):
    connection refused — is 127.0.0.1:9 reachable from the worker?

The run log shows the last attempt's message; each attempt's is one line in the worker log
(``gantry.steps``), with no traceback: vendors failing is expected. An exception that is not an
ApplicationError is a bug, and keeps its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, CancelledError

from catalog.runs.secrets import PLACEHOLDER, REDACTED
from catalog.runs.step_kinds import Vendor, describe_target, vendor_of
from contracts.steps import VENDOR_CLIENT_ERROR, VENDOR_NOT_CONFIGURED, StepInput, StepResult

log = logging.getLogger("gantry.steps")

WEBHOOK_CREDENTIALS = "check what the receiver expects (its headers, GANTRY_WEBHOOK_SECRET)"
CATALOG_CREDENTIALS = "check GANTRY_SERVICE_TOKEN"


def not_configured(uses: str, vendor: Vendor) -> Callable[..., Any]:
    """The activity for ``uses`` on a worker without ``vendor``'s settings: it fails at once,
    not retried, saying which variables to set."""

    @activity.defn(name=uses)
    async def step(inp: StepInput) -> StepResult:
        raise ApplicationError(
            vendor.not_configured,
            {"not_configured": vendor.name},
            type=VENDOR_NOT_CONFIGURED,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )

    return step


def with_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a step activity so its failures carry their context (see the module docstring)."""
    name = fn.__temporal_activity_definition.name  # type: ignore[attr-defined]

    @activity.defn(name=name)
    async def run_step(step: StepInput) -> StepResult:
        attempt = activity.info().attempt
        try:
            result: StepResult = await fn(step)
            return result
        except CancelledError:
            raise
        except ApplicationError as exc:
            error = contextual(step, exc, attempt)
            log.warning("run %s step %s: %s", step.run_id, step.step_id, error.message)
            raise error from None
        except Exception as exc:
            # A bug, not a vendor's answer: Temporal logs it with its traceback.
            raise contextual(step, ApplicationError(f"{type(exc).__name__}: {exc}"), attempt) from exc

    return run_step


def contextual(step: StepInput, exc: ApplicationError, attempt: int) -> ApplicationError:
    """``exc`` re-told with the step's kind, target, attempt, what happens next and a hint."""
    detail = _detail(exc)
    head = " ".join(part for part in (step.uses, target(step)) if part)
    if exc.type == VENDOR_NOT_CONFIGURED:
        message, final = f"{head} not run: {exc.message}", True
    else:
        final = exc.non_retryable or _out_of_attempts(step, attempt)
        reason = detail.get("network") or exc.message
        hint = _hint(step.uses, exc, detail)
        message = f"{head} failed ({_progress(step, attempt, exc, final)}): {reason}"
        message += f" — {hint}" if hint else ""
    return ApplicationError(
        message,
        {**detail, "step_error": True, "final": final},
        type=exc.type,
        non_retryable=exc.non_retryable,
        next_retry_delay=exc.next_retry_delay,
        category=exc.category,
    )


def target(step: StepInput) -> str:
    """What the step acts on; secret placeholders are masked (their marker is the run's own)."""
    return PLACEHOLDER.sub(REDACTED, describe_target(step.uses, step.params))


def _detail(exc: ApplicationError) -> dict[str, Any]:
    first = exc.details[0] if exc.details else None
    return dict(first) if isinstance(first, dict) else {}


def _hint(uses: str, exc: ApplicationError, detail: dict[str, Any]) -> str:
    if detail.get("network"):
        return f"is {detail.get('host') or 'the vendor'} reachable from the worker?"
    refused = detail.get("auth") or detail.get("status") in (401, 403)
    if not refused or exc.type != VENDOR_CLIENT_ERROR:  # GitHub's rate-limit 403 is retryable
        return ""
    vendor = vendor_of(uses)
    if vendor is not None:
        return vendor.credentials_hint
    return CATALOG_CREDENTIALS if uses.startswith("catalog.") else WEBHOOK_CREDENTIALS


def _maximum(step: StepInput) -> int:
    return int(step.retry.get("maximum_attempts") or 0)


def _out_of_attempts(step: StepInput, attempt: int) -> bool:
    maximum = _maximum(step)
    return bool(maximum) and attempt >= maximum


def _progress(step: StepInput, attempt: int, exc: ApplicationError, final: bool) -> str:
    """``attempt 3 of 5, next retry in 4 s`` / ``attempt 1 of 5, not retryable`` /
    ``attempt 5 of 5, no retries left``."""
    maximum = _maximum(step)
    where = f"attempt {attempt} of {maximum}" if maximum else f"attempt {attempt}"
    if exc.non_retryable:
        return f"{where}, not retryable"
    if final:
        return f"{where}, no retries left"
    delay = _next_delay(step, attempt, exc)
    return f"{where}, next retry in {_seconds(delay)}" if delay is not None else where


def _next_delay(step: StepInput, attempt: int, exc: ApplicationError) -> float | None:
    """Temporal's backoff: initial * coefficient ** (attempt - 1), capped; a vendor's Retry-After wins."""
    if exc.next_retry_delay is not None:
        return exc.next_retry_delay.total_seconds()
    if "initial_interval" not in step.retry:
        return None
    initial = float(step.retry["initial_interval"])
    delay = initial * float(step.retry.get("backoff_coefficient", 2.0)) ** (attempt - 1)
    return min(delay, float(step.retry.get("maximum_interval") or delay))


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.0f} min"
    return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"
