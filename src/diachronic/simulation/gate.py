"""The gate workflow of the simulation (``deploy --gate simulated-gate``): passes, or fails when told ``"fail"``.

Not sandboxed: the sandbox would re-import the simulation package (the runner, the test server's client) for a
workflow that only returns or raises."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from diachronic.ci.contracts import GateOptions

__all__ = ["GATE_ERROR", "GATE_FAILS", "SIMULATED_GATE", "SimulatedGate", "gate"]

SIMULATED_GATE = "simulated-gate"
GATE_FAILS = "fail"  # the input that makes the simulated gate fail
GATE_ERROR = "the simulated gate found a problem"


@workflow.defn(name=SIMULATED_GATE, sandboxed=False)
class SimulatedGate:
    """A version's gate workflow in the simulation: passes, or fails when told ``"fail"``."""

    @workflow.run
    async def run(self, verdict: str = "pass") -> str:
        if verdict == GATE_FAILS:
            raise ApplicationError(GATE_ERROR, type="SmokeTestFailed", non_retryable=True)
        return "passed"


def gate(*, fails: bool = False, every_step: bool = False, timeout_s: float = 600.0) -> GateOptions:
    """``deploy --gate simulated-gate``, failing or passing."""
    return GateOptions(
        workflow_type=SIMULATED_GATE, input=GATE_FAILS if fails else None, timeout_s=timeout_s, every_step=every_step
    )
