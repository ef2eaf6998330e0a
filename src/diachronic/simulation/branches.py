"""Which CI planner decisions a simulation exercised, and which it never did.

A branch is one possible answer of a pure decision in ``diachronic.ci.planner`` (every member of its enum, plus
``None`` where "nothing to report" is an answer) or one outcome of a control (accepted or refused). The list is
derived from the enums, so a new member shows up as a branch nobody covers yet.

Recording wraps the decision functions in their planner modules while a simulation runs. The workflows call them
as ``<module>.<function>(...)``, so they run the real decisions and the wrapper only notes the answer with the
calling workflow's id: no second code path, and no hook inside ``diachronic.ci``. The simulation's worker passes
``diachronic.ci.planner`` through the workflow sandbox (``runner.SIMULATION_RUNNER``); otherwise each workflow run
would import its own copy of the modules and the wrapper would never be called.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import Any

from temporalio import workflow

from diachronic.ci.contracts import Control
from diachronic.ci.planner import deploy, deployment, migration, retire, rollout

__all__ = ["CONTROL_OUTCOMES", "DECISIONS", "DecisionLog", "all_branches", "branch_of", "recording_decisions"]

DECISIONS: dict[str, tuple[ModuleType, type[Enum]]] = {
    "plan_deployment": (deployment, deployment.DeploymentKind),
    "check_traffic": (rollout, rollout.RolloutStopReason),
    "next_migration_action": (migration, migration.MigrationAction),
    "retire_blocker": (retire, retire.RetireBlocker),
    "classify_deploy": (deploy, deploy.DeployDecision),
}
"""The decision functions: their planner module and the enum of their answers."""

NONE_IS_AN_ANSWER = frozenset({"check_traffic", "retire_blocker"})  # traffic as expected / nothing blocks retiring
CONTROL_OUTCOMES = ("accepted", "refused")


def all_branches() -> list[str]:
    branches = []
    for function, (_, enum) in DECISIONS.items():
        branches += [f"{enum.__name__}.{member.name}" for member in enum]
        if function in NONE_IS_AN_ANSWER:
            branches.append(f"{enum.__name__}.None")
    branches += [f"control.{name}.{outcome}" for name in Control for outcome in CONTROL_OUTCOMES]
    return branches


def branch_of(function: str, answer: Any) -> str:
    _, enum = DECISIONS[function]
    answer = getattr(answer, "kind", answer)  # plan_deployment answers a DeploymentPlan
    return f"{enum.__name__}.{'None' if answer is None else answer.name}"


@dataclass
class DecisionLog:
    """Decisions taken while recording: (workflow id, branch), in order (replays may repeat some)."""

    entries: list[tuple[str, str]] = field(default_factory=list)

    def branches(self, workflow_ids: Callable[[str], bool] = lambda _: True) -> set[str]:
        return {branch for workflow_id, branch in self.entries if workflow_ids(workflow_id)}


_active: list[DecisionLog] = []
_originals: dict[str, Callable[..., Any]] = {}  # by function name (each decision's name is unique)


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
    """Record every planner decision taken in this process until the block ends (nestable)."""
    log = DecisionLog()
    if not _active:
        for function, (module, _) in DECISIONS.items():
            _originals[function] = getattr(module, function)
            setattr(module, function, _recorder(function, _originals[function]))
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)
        if not _active:
            for function, original in _originals.items():
                setattr(DECISIONS[function][0], function, original)
            _originals.clear()
