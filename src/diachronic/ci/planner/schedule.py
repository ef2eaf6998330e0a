"""The rollout schedule: steps ``P@D`` (wait D, then route P % of new starts), parsed, validated, defaulted.

Pure: no I/O, no clock. Every boundary (CLI, the deploy update, the deploy signal, HTTP) validates a schedule
through ``validate_steps`` (``diachronic.ci.contracts.Schedule`` does it for every model that carries steps).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from diachronic.contracts import RolloutStep
from diachronic.errors import InvalidInput

__all__ = [
    "DEFAULT_STEP_PERCENT",
    "DEFAULT_STEP_WAIT_S",
    "MAX_PERCENT",
    "default_steps",
    "format_steps",
    "parse_steps",
    "validate_steps",
]

DEFAULT_STEP_PERCENT = 10
DEFAULT_STEP_WAIT_S = 60.0
MAX_PERCENT = 100

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
        if percent > MAX_PERCENT:
            raise InvalidInput(f"rollout step {percent}% is outside 0..100")
        steps.append(RolloutStep(percent=percent, wait_s=amount * _UNIT_S[unit]))
    return validate_steps(steps)


def validate_steps(steps: Sequence[RolloutStep]) -> list[RolloutStep]:
    """Percentages 0..100 that never go down, waits of 0 s or more; a schedule that stops short of 100 % gets a
    final 100 % step (waiting as long as its last step), so every rollout ends at 100 %."""
    if not steps:
        raise InvalidInput("a rollout schedule needs at least one step")
    previous = 0
    for step in steps:
        if not 0 <= step.percent <= MAX_PERCENT:
            raise InvalidInput(f"rollout step {step.percent}% is outside 0..100")
        if step.wait_s < 0:
            raise InvalidInput(f"rollout step {step.percent}% waits {step.wait_s:g} s: a wait cannot be negative")
        if step.percent < previous:
            raise InvalidInput(f"rollout steps must not go down: {step.percent}% comes after {previous}%")
        previous = step.percent
    if previous != MAX_PERCENT:
        return [*steps, RolloutStep(percent=MAX_PERCENT, wait_s=steps[-1].wait_s)]
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
