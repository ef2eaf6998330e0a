"""The canary cohort: what the migration may move, phase by phase, and the cohort's size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.contracts import CanaryOptions, CanaryPhase, Cohort
from diachronic.ci.planner.canary import (
    CanaryPlan,
    CanarySnapshot,
    cohort_remaining,
    cohort_target,
    parse_canary,
    plan_canary,
)
from diachronic.errors import InvalidInput

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
FIVE = CanaryOptions(size=5, soak_s=60)
TEN_PERCENT = CanaryOptions(percent=10, query='CustomerTier="free"', soak_s=60)


@pytest.mark.parametrize(
    ("snapshot", "plan"),
    [
        (CanarySnapshot(None, NOW), CanaryPlan(CanaryPhase.REST)),
        (CanarySnapshot(FIVE, NOW), CanaryPlan(CanaryPhase.COHORT, Cohort(options=FIVE))),
        (
            CanarySnapshot(FIVE, NOW, target=5, signalled=2, candidates_left=30),
            CanaryPlan(CanaryPhase.COHORT, Cohort(options=FIVE, target=5, signalled=2)),
        ),
        (
            CanarySnapshot(FIVE, NOW, target=5, signalled=5, candidates_left=25),
            CanaryPlan(CanaryPhase.SOAK, soak_until=NOW + timedelta(seconds=60)),
        ),
        (
            CanarySnapshot(FIVE, NOW, target=5, signalled=3, candidates_left=0),
            CanaryPlan(CanaryPhase.SOAK, soak_until=NOW + timedelta(seconds=60)),
        ),
        (CanarySnapshot(FIVE, NOW, target=5, signalled=0, candidates_left=0), CanaryPlan(CanaryPhase.REST)),
        (
            CanarySnapshot(FIVE, NOW, target=5, signalled=5, soak_until=NOW + timedelta(seconds=1)),
            CanaryPlan(CanaryPhase.SOAK, soak_until=NOW + timedelta(seconds=1)),
        ),
        (CanarySnapshot(FIVE, NOW, target=5, signalled=5, soak_until=NOW), CanaryPlan(CanaryPhase.REST)),
        (
            CanarySnapshot(TEN_PERCENT, NOW, target=None, signalled=0),
            CanaryPlan(CanaryPhase.COHORT, Cohort(options=TEN_PERCENT)),
        ),
    ],
    ids=[
        "no canary: migrate everyone",
        "first look: the cohort, its size fixed by the sweep",
        "cohort partly signalled: more of it",
        "cohort signalled: soak",
        "fewer candidates than the target: soak what moved",
        "nobody to move: no soak",
        "soaking",
        "soak over: the rest",
        "a percentage with a query: the sweep fixes the size",
    ],
)
def test_plan_canary(snapshot: CanarySnapshot, plan: CanaryPlan) -> None:
    assert plan_canary(snapshot) == plan


@pytest.mark.parametrize(
    ("options", "candidates", "target"),
    [
        (FIVE, 100, 5),
        (FIVE, 2, 5),
        (TEN_PERCENT, 100, 10),
        (TEN_PERCENT, 101, 11),
        (TEN_PERCENT, 3, 1),
        (TEN_PERCENT, 0, 0),
    ],
    ids=["N", "N beyond the candidates", "P %", "P % rounds up", "at least one", "no candidates"],
)
def test_cohort_target(options: CanaryOptions, candidates: int, target: int) -> None:
    assert cohort_target(options, candidates) == target


def test_cohort_remaining_uses_the_fixed_target_once_known() -> None:
    assert cohort_remaining(Cohort(options=TEN_PERCENT), 200) == 20
    assert cohort_remaining(Cohort(options=TEN_PERCENT, target=20, signalled=15), 5000) == 5
    assert cohort_remaining(Cohort(options=FIVE, target=5, signalled=7), 10) == 0


def test_a_cohort_migrates_then_soaks_then_the_rest_moves_on_a_virtual_clock() -> None:
    """The loop the migration runs, with 40 eligible workflows, signalling at most 3 per sweep, a sweep every 2 s."""
    batch, now, phases = 3, NOW, []
    target = None
    signalled, candidates, soak_until = 0, 40, None
    while True:
        plan = plan_canary(CanarySnapshot(FIVE, now, target, signalled, candidates - signalled, soak_until))
        phases.append(plan.phase)
        if plan.phase is CanaryPhase.REST:
            break
        if plan.phase is CanaryPhase.SOAK:
            soak_until = plan.soak_until
        else:
            assert plan.cohort is not None
            target = cohort_target(FIVE, candidates) if target is None else target
            signalled += min(batch, cohort_remaining(plan.cohort, candidates))
        now += timedelta(seconds=2)
    assert (signalled, now - NOW) == (5, timedelta(seconds=4 + 60))  # the soak counts from the completing sweep
    assert phases == [*[CanaryPhase.COHORT] * 2, *[CanaryPhase.SOAK] * 30, CanaryPhase.REST]


@pytest.mark.parametrize(
    ("text", "parsed"), [("25", (25, None)), (" 5% ", (None, 5.0)), ("0.5%", (None, 0.5)), ("100%", (None, 100.0))]
)
def test_parse_canary(text: str, parsed: tuple[int | None, float | None]) -> None:
    assert parse_canary(text) == parsed


@pytest.mark.parametrize("text", ["", "0", "-3", "five", "0%", "101%", "%", "1000000"])
def test_parse_canary_refuses(text: str) -> None:
    with pytest.raises(InvalidInput, match="--migrate-canary"):
        parse_canary(text)


def test_canary_options_need_exactly_one_size() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CanaryOptions()
    with pytest.raises(ValueError, match="exactly one"):
        CanaryOptions(size=3, percent=5)
