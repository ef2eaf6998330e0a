"""Which CI planning decisions a simulation exercised, and which it never did.

A branch is one possible answer of a pure decision in ``diachronic.ci.planning`` (every member of its enum, plus
``None`` where "nothing to report" is an answer) or one outcome of a control (accepted or refused). The list is
derived from the enums, so a new member shows up as a branch nobody covers yet.

Recording wraps the decision functions in the ``planning`` module while a simulation runs. The workflows call
them as ``planning.<function>(...)``, so they run the real decisions and the wrapper only notes the answer with
the calling workflow's id: no second code path, and no hook inside ``diachronic.ci``. The simulation's worker
passes ``diachronic.ci.planning`` through the workflow sandbox (``runner.SIMULATION_RUNNER``); otherwise each
workflow run would import its own copy of the module and the wrapper would never be called.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from temporalio import workflow

from diachronic.ci import planning
from diachronic.ci.client import CONTROLS

__all__ = ["CONTROL_OUTCOMES", "DECISIONS", "DecisionLog", "all_branches", "branch_of", "recording_decisions"]

DECISIONS: dict[str, type[Enum]] = {
    "plan_deployment": planning.DeploymentKind,
    "check_traffic": planning.RolloutStopReason,
    "next_migration_action": planning.MigrationAction,
    "retire_blocker": planning.RetireBlocker,
    "classify_deploy": planning.DeployDecision,
}
"""The decision functions and the enum of their answers."""

NONE_IS_AN_ANSWER = frozenset({"check_traffic", "retire_blocker"})  # traffic as expected / nothing blocks retiring
CONTROL_OUTCOMES = ("accepted", "refused")


def all_branches() -> list[str]:
    branches = []
    for function, enum in DECISIONS.items():
        branches += [f"{enum.__name__}.{member.name}" for member in enum]
        if function in NONE_IS_AN_ANSWER:
            branches.append(f"{enum.__name__}.None")
    branches += [f"control.{name}.{outcome}" for name in CONTROLS for outcome in CONTROL_OUTCOMES]
    return branches


def branch_of(function: str, answer: Any) -> str:
    enum = DECISIONS[function]
    answer = getattr(answer, "kind", answer)  # plan_deployment answers a DeploymentPlan
    return f"{enum.__name__}.{'None' if answer is None else answer.name}"


@dataclass
class DecisionLog:
    """Decisions taken while recording: (workflow id, branch), in order (replays may repeat some)."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def branches(self, workflow_ids: Callable[[str], bool] = lambda _: True) -> set[str]:
        return {branch for workflow_id, branch in self.entries if workflow_ids(workflow_id)}


_active: list[DecisionLog] = []
_originals: dict[str, Callable[..., Any]] = {}


def _recorder(function: str, decide: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(decide)
    def record(*args: Any, **kwargs: Any) -> Any:
        answer = decide(*args, **kwargs)
        workflow_id = workflow.info().workflow_id if workflow.in_workflow() else ""
        for log in _active:
            log.entries.append((workflow_id, branch_of(function, answer)))
        return answer

    return record


@contextlib.contextmanager
def recording_decisions() -> Iterator[DecisionLog]:
    """Record every planning decision taken in this process until the block ends (nestable)."""
    log = DecisionLog()
    if not _active:
        for function in DECISIONS:
            _originals[function] = getattr(planning, function)
            setattr(planning, function, _recorder(function, _originals[function]))
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)
        if not _active:
            for function, original in _originals.items():
                setattr(planning, function, original)
            _originals.clear()
