"""The rollout's decisions."""

from __future__ import annotations

import pytest
from tests.planner_factories import flag

from diachronic.ci.planner import rollout
from diachronic.ci.planner.rollout import RolloutStopReason, TrafficObservation


@pytest.mark.parametrize(
    ("observed", "expected_percent", "reason"),
    [
        (TrafficObservation(20), 20, None),
        (TrafficObservation(42), 20, RolloutStopReason.HUMAN_EDIT),
        (TrafficObservation(100), 20, RolloutStopReason.HUMAN_EDIT),
        (TrafficObservation(None, strategy_found=False), 20, RolloutStopReason.STRATEGY_MISSING),
        (TrafficObservation(20, strategy_disabled=True), 20, RolloutStopReason.STRATEGY_DISABLED),
        (TrafficObservation(None, flag_found=False), 20, RolloutStopReason.FLAG_MISSING),
    ],
    ids=["unchanged", "hand edit", "fast-forward by hand", "strategy deleted", "strategy disabled", "flag archived"],
)
def test_check_traffic(observed: TrafficObservation, expected_percent: int, reason: RolloutStopReason | None) -> None:
    assert rollout.check_traffic(observed, expected_percent) is reason


def test_observe_flag_reads_the_general_strategy() -> None:
    assert rollout.observe_flag(flag(1, "b", 30)) == TrafficObservation(30)
    assert rollout.observe_flag(flag(1, "b", None)) == TrafficObservation(None, strategy_found=False)
    assert rollout.observe_flag(None) == TrafficObservation(None, flag_found=False)
    assert rollout.observe_flag(flag(1, "b", 30, archived=True)).flag_found is False
