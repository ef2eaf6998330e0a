"""Simulation: the real CI workflows in virtual time, every activity faked from its contract.

``fakes`` generates activities from their pydantic contracts; ``world`` is the stateful fake world scenarios
script; ``runner`` runs and judges scenarios; ``scenarios`` is the catalog; ``branches`` tells which planner
decisions were exercised. ``diachronic simulate`` runs the catalog.
"""

from __future__ import annotations

from diachronic.simulation.fakes import (
    ActivityContract,
    ContractFakes,
    FailurePolicy,
    Sampler,
    SimulatedFailure,
    activity_contracts,
)
from diachronic.simulation.runner import Expect, Outcome, Report, Scenario, Sim, run_catalog, run_scenario
from diachronic.simulation.world import FlagEnd, World

__all__ = [
    "ActivityContract",
    "ContractFakes",
    "Expect",
    "FailurePolicy",
    "FlagEnd",
    "Outcome",
    "Report",
    "Sampler",
    "Scenario",
    "Sim",
    "SimulatedFailure",
    "World",
    "activity_contracts",
    "run_catalog",
    "run_scenario",
]
