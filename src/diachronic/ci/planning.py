"""Pure decisions of the CI: what a deployment is, the rollout schedule, what the rollout and the
migration do next, and when an old version may be retired. No I/O, no clock: callers pass ``now``.

Workflows call these inline (they are deterministic) and execute the result with one activity per action.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from diachronic.contracts import RolloutStep, VersionInfo
from diachronic.errors import InvalidInput
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import general_percent

DEFAULT_STEP_PERCENT = 10
DEFAULT_STEP_WAIT_S = 60.0
MAX_PERCENT = 100


# --------------------------------------------------------------------------------------------------- deployments


class DeploymentKind(StrEnum):
    INITIAL = "initial"  # no previous version: route 100 % and finish
    ROLLOUT = "rollout"  # a previous version exists: roll out, then migrate or clean up


@dataclass(frozen=True)
class DeploymentPlan:
    kind: DeploymentKind
    from_version: VersionInfo | None


def plan_deployment(previous: VersionInfo | None) -> DeploymentPlan:
    """Initial when nothing was deployed before; otherwise a rollout from the previous version."""
    if previous is None:
        return DeploymentPlan(DeploymentKind.INITIAL, None)
    return DeploymentPlan(DeploymentKind.ROLLOUT, previous)


# --------------------------------------------------------------------------------------------------- schedule

_STEP = re.compile(r"^\s*(\d{1,3})\s*%?\s*@\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_steps(text: str) -> list[RolloutStep]:
    """``"10@60s,20@60s,100@2m"`` → steps. A step ``P@D`` waits D, then routes P %."""
    steps: list[RolloutStep] = []
    for part in text.split(","):
        match = _STEP.match(part)
        if not match:
            raise InvalidInput(f"invalid rollout step {part.strip()!r}: expected PERCENT@DURATION, e.g. 25@30s")
        percent, amount, unit = int(match[1]), float(match[2]), match[3]
        if not 0 < percent <= MAX_PERCENT:
            raise InvalidInput(f"rollout step {percent}% is outside 1..100")
        steps.append(RolloutStep(percent=percent, wait_s=amount * _UNIT_S[unit]))
    return validate_steps(steps)


def validate_steps(steps: Sequence[RolloutStep]) -> list[RolloutStep]:
    """Percentages must rise strictly, stay within 1..100 and the schedule must end at 100 %."""
    if not steps:
        raise InvalidInput("a rollout schedule needs at least one step")
    previous = 0
    for step in steps:
        if not 0 < step.percent <= MAX_PERCENT:
            raise InvalidInput(f"rollout step {step.percent}% is outside 1..100")
        if step.percent <= previous:
            raise InvalidInput(f"rollout steps must rise: {step.percent}% comes after {previous}%")
        previous = step.percent
    if previous != MAX_PERCENT:
        raise InvalidInput(f"a rollout schedule must end at 100%, this one ends at {previous}%")
    return list(steps)


def default_steps(
    step_percent: int = DEFAULT_STEP_PERCENT,
    wait_s: float = DEFAULT_STEP_WAIT_S,
    *,
    start_percent: int = 0,
    max_percent: int = MAX_PERCENT,
) -> list[RolloutStep]:
    """Equal steps from ``start_percent``; the last step is always exactly ``max_percent`` (10, 20, ..., 100)."""
    if step_percent <= 0:
        raise InvalidInput("the rollout step must be a positive percentage")
    if not 0 <= start_percent < max_percent <= MAX_PERCENT:
        raise InvalidInput(f"need 0 <= start ({start_percent}) < max ({max_percent}) <= 100")
    percents = [*list(range(start_percent + step_percent, max_percent, step_percent)), max_percent]
    return [RolloutStep(percent=p, wait_s=wait_s) for p in percents]


def format_steps(steps: Sequence[RolloutStep]) -> str:
    return ",".join(f"{s.percent}@{s.wait_s:g}s" for s in steps)


# --------------------------------------------------------------------------------------------------- rollout


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
    strategy = next((s for s in flag.strategies if s.title == "All other traffic"), None)
    if strategy is None:
        return TrafficObservation(None, strategy_found=False)
    return TrafficObservation(general_percent(flag), strategy_disabled=strategy.disabled)


# --------------------------------------------------------------------------------------------------- retirement


class RetireBlocker(StrEnum):
    RUNNING = "workflows still run on the old task queue"
    ROUTED = "the old version still receives routed traffic"
    NEWEST = "the old version is the newest version"


def retire_blocker(
    flags_newest_first: Sequence[VersionFlag], old: VersionInfo, running_on_old_queue: int
) -> RetireBlocker | None:
    """Safety invariant: never delete the workers of a version that still runs workflows or receives traffic.

    The old version receives no general traffic once some newer enabled flag routes 100 % of it (newest wins);
    isTest traffic always goes to the newest flag, which the old version is not."""
    if running_on_old_queue > 0:
        return RetireBlocker.RUNNING
    live = [f for f in flags_newest_first if not f.archived]
    if live and live[0].info.version_id == old.version_id and live[0].info.seq_id == old.seq_id:
        return RetireBlocker.NEWEST
    for flag in live:
        if flag.info.seq_id <= old.seq_id:
            break
        if flag.enabled and general_percent(flag) == MAX_PERCENT:
            return None
    return RetireBlocker.ROUTED


# --------------------------------------------------------------------------------------------------- migration


class MigrationAction(StrEnum):
    SIGNAL_MORE = "signal_more"  # more eligible workflows wait for their signal: go again at once
    WAIT = "wait"  # some still run on the old queue (not yet eligible, or migrating): poll again later
    RETIRE = "retire"  # nothing runs on the old queue: delete its workers, archive its flag


def next_migration_action(*, eligible_unsignalled: int, running_on_old_queue: int) -> MigrationAction:
    if eligible_unsignalled > 0:
        return MigrationAction.SIGNAL_MORE
    if running_on_old_queue > 0:
        return MigrationAction.WAIT
    return MigrationAction.RETIRE


def prune_signalled(signalled: Sequence[str], still_running: Sequence[str]) -> list[str]:
    """Keep only the signalled runs still on the old queue: a run that left it never comes back."""
    running = set(still_running)
    return [run for run in signalled if run in running]


# --------------------------------------------------------------------------------------------------- CI queue


class DeployDecision(StrEnum):
    ACCEPT = "accept"
    DUPLICATE_CURRENT = "duplicate of the deployment in progress"
    DUPLICATE_QUEUED = "duplicate of a queued deployment"


def classify_deploy(version_id: str, *, current: str | None, queued: Sequence[str]) -> DeployDecision:
    """A deploy of the version being deployed, or of one already waiting in the queue, is not run twice."""
    if version_id == current:
        return DeployDecision.DUPLICATE_CURRENT
    if version_id in queued:
        return DeployDecision.DUPLICATE_QUEUED
    return DeployDecision.ACCEPT
