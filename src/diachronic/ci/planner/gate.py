"""The gate: a validation workflow of the user's, run on the new version's task queue before traffic moves.

``deploy --gate TYPE`` runs it once, after the version's workers are ready and before anything routes to it;
``--gate-every-step`` also before each later rollout step. The workflows run it as a child workflow and ask here:

    gate_due(options, step_index)   -> run the gate before this step?
    judge_gate(outcome)             -> PROCEED, or ABORT with the gate's error (``GateFailed`` / ``GateTimedOut``)

An aborted deployment before its first step routed nothing to the new version; a later one goes back to 0 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from diachronic.ci.contracts import GateOptions

__all__ = ["GateAction", "GateFailure", "GateOutcome", "GatePlan", "gate_due", "judge_gate"]


class GateAction(StrEnum):
    PROCEED = "proceed"
    ABORT = "abort"


class GateFailure(StrEnum):
    """The typed reason of a deployment a gate aborted."""

    FAILED = "GateFailed"
    TIMED_OUT = "GateTimedOut"


@dataclass(frozen=True)
class GateOutcome:
    """How the gate workflow ended: succeeded, or why not (its failure's text)."""

    succeeded: bool
    timed_out: bool = False
    error: str | None = None


@dataclass(frozen=True)
class GatePlan:
    action: GateAction
    reason: GateFailure | None = None
    detail: str | None = None

    @property
    def branch(self) -> GateAction:
        return self.action


def gate_due(options: GateOptions | None, step_index: int) -> bool:
    """Before the first step when a gate is given; before every later one only with ``every_step``."""
    if options is None:
        return False
    return step_index == 0 or options.every_step


def judge_gate(options: GateOptions, step_index: int, outcome: GateOutcome) -> GatePlan:
    """A gate that failed or ran past its timeout aborts the deployment, its error quoted."""
    if outcome.succeeded:
        return GatePlan(GateAction.PROCEED)
    where = "before the first step" if step_index == 0 else f"before step {step_index + 1}"
    if outcome.timed_out:
        return GatePlan(
            GateAction.ABORT,
            GateFailure.TIMED_OUT,
            f"gate {options.workflow_type} did not finish within {options.timeout_s:g} s {where}",
        )
    return GatePlan(
        GateAction.ABORT,
        GateFailure.FAILED,
        f"gate {options.workflow_type} failed {where}: {outcome.error or 'no reason given'}",
    )
