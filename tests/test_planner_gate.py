"""The gate: when it runs, and what its outcome does to the deployment."""

from __future__ import annotations

import pytest

from diachronic.ci.contracts import GateOptions
from diachronic.ci.planner.gate import GateAction, GateFailure, GateOutcome, GatePlan, gate_due, judge_gate

ONCE = GateOptions(workflow_type="smoke", timeout_s=60)
EVERY = GateOptions(workflow_type="smoke", timeout_s=60, every_step=True)


@pytest.mark.parametrize(
    ("options", "step_index", "due"),
    [
        (None, 0, False),
        (None, 3, False),
        (ONCE, 0, True),
        (ONCE, 1, False),
        (ONCE, 9, False),
        (EVERY, 0, True),
        (EVERY, 1, True),
        (EVERY, 9, True),
    ],
    ids=[
        "no gate: never",
        "no gate: not later either",
        "a gate runs before the first step",
        "once: not before the second",
        "once: not before the last",
        "every step: the first",
        "every step: the second",
        "every step: the last",
    ],
)
def test_gate_due(options: GateOptions | None, step_index: int, due: bool) -> None:
    assert gate_due(options, step_index) is due


@pytest.mark.parametrize(
    ("step_index", "outcome", "plan"),
    [
        (0, GateOutcome(succeeded=True), GatePlan(GateAction.PROCEED)),
        (4, GateOutcome(succeeded=True), GatePlan(GateAction.PROCEED)),
        (
            0,
            GateOutcome(succeeded=False, error="ApplicationError: checkout answered 500"),
            GatePlan(
                GateAction.ABORT,
                GateFailure.FAILED,
                "gate smoke failed before the first step: ApplicationError: checkout answered 500",
            ),
        ),
        (
            2,
            GateOutcome(succeeded=False, timed_out=True, error="TimeoutError: workflow timed out"),
            GatePlan(GateAction.ABORT, GateFailure.TIMED_OUT, "gate smoke did not finish within 60 s before step 3"),
        ),
        (
            1,
            GateOutcome(succeeded=False),
            GatePlan(GateAction.ABORT, GateFailure.FAILED, "gate smoke failed before step 2: no reason given"),
        ),
    ],
    ids=[
        "passed before the first step: proceed",
        "passed before a later step: proceed",
        "failed: abort with the gate's error",
        "timed out: abort, GateTimedOut",
        "failed without a message: still an abort",
    ],
)
def test_judge_gate(step_index: int, outcome: GateOutcome, plan: GatePlan) -> None:
    assert judge_gate(EVERY, step_index, outcome) == plan
