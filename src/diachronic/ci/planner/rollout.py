"""The rollout's decisions: is the flag still as the automation left it, or must the rollout stop?

Pure: the rollout workflow reads the flag (an activity), asks here, and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from diachronic.flags import GENERAL_TRAFFIC_TITLE, VersionFlag
from diachronic.flags.evaluation import general_percent

__all__ = ["RolloutStopReason", "TrafficObservation", "check_traffic", "observe_flag"]


class RolloutStopReason(StrEnum):
    HUMAN_EDIT = "RolloutPercentNotExpected"  # somebody changed "All other traffic": a human always wins
    STRATEGY_MISSING = "GeneralTrafficStrategyNotFound"
    STRATEGY_DISABLED = "GeneralTrafficStrategyDisabled"
    FLAG_MISSING = "FlagNotFound"


@dataclass(frozen=True)
class TrafficObservation:
    """What the flag says now: the general rollout percent, or why there is none."""

    percent: int | None
    strategy_found: bool = True
    strategy_disabled: bool = False
    flag_found: bool = True


def check_traffic(observed: TrafficObservation, expected: int) -> RolloutStopReason | None:
    """None when the flag still holds what automation last wrote; else why the rollout must stop."""
    if not observed.flag_found:
        return RolloutStopReason.FLAG_MISSING
    if not observed.strategy_found:
        return RolloutStopReason.STRATEGY_MISSING
    if observed.percent != expected:
        return RolloutStopReason.HUMAN_EDIT
    if observed.strategy_disabled:
        return RolloutStopReason.STRATEGY_DISABLED
    return None


def observe_flag(flag: VersionFlag | None) -> TrafficObservation:
    if flag is None or flag.archived:
        return TrafficObservation(None, flag_found=False)
    strategy = next((s for s in flag.strategies if s.title == GENERAL_TRAFFIC_TITLE), None)
    if strategy is None:
        return TrafficObservation(None, strategy_found=False)
    return TrafficObservation(general_percent(flag), strategy_disabled=strategy.disabled)
