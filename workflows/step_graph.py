"""Which steps of a run may start now: the bookkeeping of ``ActionRun``'s parallel scheduler.

Pure and deterministic (the workflow calls it between awaits): every answer comes in the
steps' definition order, so the same history always starts the same steps in the same order.
A step is ``pending`` until it starts, ``running``, then ``done`` (it succeeded, or its ``if``
skipped it: its dependents still run), ``failed``, or ``blocked`` (a step it needs failed, so it
never starts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PENDING, RUNNING, DONE, FAILED, BLOCKED = "pending", "running", "done", "failed", "blocked"


@dataclass
class StepGraph:
    """The steps by id in definition order, what each needs, and where each one is."""

    needs: dict[str, list[str]]
    state: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, needs: Mapping[str, list[str]], finished: Iterable[str] = ()) -> StepGraph:
        """The graph before this execution starts anything; ``finished`` steps (kept by a retry
        from the execution before) count as done."""
        ended = set(finished)
        return cls(
            needs={k: list(v) for k, v in needs.items()},
            state={step_id: DONE if step_id in ended else PENDING for step_id in needs},
        )

    def ready(self) -> list[str]:
        """The pending steps whose every need is done."""
        return [
            step_id
            for step_id, state in self.state.items()
            if state == PENDING and all(self.state.get(n) == DONE for n in self.needs[step_id])
        ]

    def start(self, step_id: str) -> None:
        self.state[step_id] = RUNNING

    def finish(self, step_id: str) -> None:
        self.state[step_id] = DONE

    def fail(self, step_id: str) -> list[str]:
        """Mark the step failed; block the pending steps that need it, directly or not, and
        return them."""
        self.state[step_id] = FAILED
        blocked = [s for s in self.dependents(step_id) if self.state[s] == PENDING]
        for s in blocked:
            self.state[s] = BLOCKED
        return blocked

    def dependents(self, step_id: str) -> list[str]:
        """Every step that needs ``step_id``, directly or through others."""
        found: set[str] = set()
        frontier = {step_id}
        while frontier:
            frontier = {s for s, needs in self.needs.items() if frontier & set(needs)} - found
            found |= frontier
        return [s for s in self.needs if s in found]

    def running(self) -> list[str]:
        return [s for s, state in self.state.items() if state == RUNNING]
