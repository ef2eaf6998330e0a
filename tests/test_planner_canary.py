"""The canary cohort: what the migration may move, phase by phase, and the cohort's size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from diachronic.ci.contracts import CanaryOptions, CanaryPhase, CanaryProgress, Cohort
from diachronic.ci.planner.canary import (
    CanaryPlan,
    CanarySnapshot,
    call_budget,
    cohort_remaining,
    cohort_target,
    look,
    parse_canary,
    plan_canary,
    record_cohort,
    start_cohort_call,
)
from diachronic.ci.planner.sweep import SweepProgress
from diachronic.errors import InvalidInput
from diachronic.temporal import check_filter, narrowed

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


@pytest.mark.parametrize(
    ("carried", "plan", "after"),
    [
        (None, CanaryPlan(CanaryPhase.COHORT, Cohort(options=FIVE)), CanaryProgress(phase=CanaryPhase.COHORT)),
        (
            CanaryProgress(phase=CanaryPhase.COHORT, target=5, signalled=5, candidates_left=20),
            CanaryPlan(CanaryPhase.SOAK, soak_until=NOW + timedelta(seconds=60)),
            CanaryProgress(
                phase=CanaryPhase.SOAK,
                target=5,
                signalled=5,
                candidates_left=20,
                soak_until=NOW + timedelta(seconds=60),
            ),
        ),
        (
            CanaryProgress(phase=CanaryPhase.SOAK, target=5, signalled=5, soak_until=NOW),
            CanaryPlan(CanaryPhase.REST),
            CanaryProgress(phase=CanaryPhase.REST, target=5, signalled=5, soak_until=NOW),
        ),
    ],
    ids=["first look", "the cohort complete: the soak's end decided once", "the soak over"],
)
def test_look_plans_over_what_the_migration_carries(
    carried: CanaryProgress | None, plan: CanaryPlan, after: CanaryProgress
) -> None:
    assert look(FIVE, carried, NOW) == (plan, after)


def test_look_without_a_canary_is_rest_and_carries_nothing() -> None:
    assert look(None, None, NOW) == (CanaryPlan(CanaryPhase.REST), None)


def test_a_cohort_call_fixes_the_size_once_and_spends_its_budget() -> None:
    started = start_cohort_call(Cohort(options=TEN_PERCENT), SweepProgress(), 200)
    assert (started.candidates, started.cohort_target) == (200, 20)
    assert call_budget(Cohort(options=TEN_PERCENT), started) == 20
    later = start_cohort_call(Cohort(options=TEN_PERCENT, target=20, signalled=15), SweepProgress(), 5000)
    assert later.cohort_target == 20  # fixed at the first look, whatever the candidates now
    assert (
        call_budget(Cohort(options=TEN_PERCENT, target=20, signalled=15), later.model_copy(update={"signalled": 3}))
        == 2
    )


@pytest.mark.parametrize(
    ("progress", "after"),
    [
        (
            SweepProgress(candidates=30, cohort_target=5, signalled=2, cursor="c"),
            CanaryProgress(phase=CanaryPhase.COHORT, target=5, signalled=2),
        ),
        (
            SweepProgress(candidates=3, cohort_target=5, signalled=3, done=True),
            CanaryProgress(phase=CanaryPhase.COHORT, target=5, signalled=3, candidates_left=0),
        ),
        (
            SweepProgress(candidates=40, cohort_target=5, signalled=0, done=True),
            CanaryProgress(phase=CanaryPhase.COHORT, target=5, signalled=0, candidates_left=40),
        ),
    ],
    ids=["mid-sweep: members counted", "sweep over, every candidate signalled", "none eligible yet: candidates left"],
)
def test_record_cohort(progress: SweepProgress, after: CanaryProgress) -> None:
    assert record_cohort(CanaryProgress(phase=CanaryPhase.COHORT), progress) == after


@pytest.mark.parametrize(
    ("progress", "summary"),
    [
        (CanaryProgress(phase=CanaryPhase.COHORT, target=5, signalled=3), "canary cohort 3/5"),
        (CanaryProgress(phase=CanaryPhase.COHORT), "canary cohort 0/?"),
        (
            CanaryProgress(phase=CanaryPhase.SOAK, soak_until=datetime(2026, 11, 29, 14, 5, 9, tzinfo=UTC)),
            "canary soak until 14:05:09 UTC",
        ),
        (CanaryProgress(phase=CanaryPhase.REST), "canary rest: the cohort passed its soak, the rest moves"),
    ],
)
def test_status_says_the_phase(progress: CanaryProgress, summary: str) -> None:
    assert progress.summary == summary


@pytest.mark.parametrize(
    "query", ['CustomerTier="free"', 'WorkflowId STARTS_WITH "a(" AND (x = 1 OR y = 2)', "Note = 'order by x'"]
)
def test_a_cohort_query_that_keeps_to_its_parentheses_is_accepted(query: str) -> None:
    assert check_filter(f"  {query} ", "--canary-query") == query
    assert narrowed("A=1", query) == f"A=1 AND ({query})"


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("  ", "empty"),
        ('a="x") OR (1=1', "a ')' closes nothing"),
        ("(a=1", "a '(' is not closed"),
        ('a="x', "a string is not closed"),
        ("a=1 ORDER BY StartTime", "cannot sort or group"),
        ("a=1 group  by b", "cannot sort or group"),
    ],
)
def test_a_cohort_query_that_could_change_the_sweeps_query_is_refused_naming_it(query: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=r"--canary-query") as refused:
        check_filter(query, "--canary-query")
    assert why in refused.value.message
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        CanaryOptions(size=1, query=query)
