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

from diachronic.ci.contracts import CanaryPhase, Control, HealthRule, Phase
from diachronic.ci.planner import (
    canary,
    deploy,
    deployment,
    gate,
    health,
    migration,
    readiness,
    retire,
    retire_delay,
    rollback,
    rollout,
    sweep,
)

__all__ = [
    "CONTROL_OUTCOMES",
    "DECISIONS",
    "Decision",
    "DecisionLog",
    "all_branches",
    "branch_of",
    "recording_decisions",
]


@dataclass(frozen=True)
class Decision:
    """A planner function, and the answers it can give (the plans' ``branch``; ``None`` where that is an answer)."""

    module: ModuleType
    answers: tuple[Enum | None, ...]


DECISIONS: dict[str, Decision] = {
    "classify_deploy": Decision(deploy, tuple(deploy.DeployDecision)),
    "plan_start": Decision(deployment, tuple(deployment.StartVerdict)),
    "plan_children": Decision(
        deployment,
        (
            Phase.ROLLING_OUT,
            Phase.MIGRATING,
            Phase.COMPLETED,
            Phase.STOPPED,
            Phase.FAILED,
            Phase.CANCELLED,
            Phase.ABORTED,
        ),
    ),
    "plan_rollout": Decision(rollout, tuple(rollout.RolloutAction)),
    "check_traffic": Decision(rollout, (*rollout.RolloutStopReason, None)),  # None: as the automation left it
    "next_sweep": Decision(sweep, tuple(sweep.SweepAction)),
    "after_drain": Decision(
        migration,
        (migration.MigrationAction.RETIRE, migration.MigrationAction.WAIT, migration.MigrationAction.HAND_OFF),
    ),
    # DELAYED is the retire delay's answer, never the retire rule's.
    "plan_retire": Decision(
        retire, (*(b for b in retire.RetireBlocker if b is not retire.RetireBlocker.DELAYED), *retire.RetireAction)
    ),
    "hold_while_counting": Decision(retire_delay, (retire.RetireBlocker.DELAYED,)),
    "plan_readiness": Decision(readiness, tuple(readiness.ReadinessAction)),
    "judge_gate": Decision(gate, tuple(gate.GateAction)),
    "judge_health": Decision(health, (*HealthRule, None)),  # None: healthy
    "plan_redeploy": Decision(rollback, tuple(rollback.RedeployKind)),
    "plan_canary": Decision(canary, tuple(CanaryPhase)),
}
"""The decision functions, by name (each is unique across the planner's modules)."""

CONTROL_OUTCOMES = ("accepted", "refused")


def _name(function: str, answer: Enum | None) -> str:
    if answer is None:
        enum = next(type(a) for a in DECISIONS[function].answers if a is not None)
        return f"{enum.__name__}.None"
    return f"{type(answer).__name__}.{answer.name}"


def all_branches() -> list[str]:
    branches = list(dict.fromkeys(_name(function, answer) for function, d in DECISIONS.items() for answer in d.answers))
    branches += [f"control.{name}.{outcome}" for name in Control for outcome in CONTROL_OUTCOMES]
    return branches


def branch_of(function: str, answer: Any) -> str:
    """A plan names its branch (``branch``); an enum or ``None`` is its own."""
    return _name(function, getattr(answer, "branch", answer))


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
        for function, decision in DECISIONS.items():
            _originals[function] = getattr(decision.module, function)
            setattr(decision.module, function, _recorder(function, _originals[function]))
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)
        if not _active:
            for function, original in _originals.items():
                setattr(DECISIONS[function].module, function, original)
            _originals.clear()
