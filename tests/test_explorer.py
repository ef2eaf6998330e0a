"""The explorer on the real CI workflows (time-skipping server): it finds the defects of issue 12 §1 (1, 2, 3, 5)
within a fixed budget, shrinks a counter-example and prints it as a scenario that fails the catalog's judgement, and
reports a story that stalled the test server once (fails on a second stall). Budgets are counted in stories."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import pytest
import temporalio.workflow

from diachronic.ci.contracts import CIInput, Phase
from diachronic.ci.planner import deployment, retire
from diachronic.simulation import actions
from diachronic.simulation.actions import (
    Deploy,
    Fail,
    FinishWorkflows,
    RaceWrite,
    SetPercent,
    Start,
    StartWorkflows,
    Story,
    Wait,
    python_literal,
)
from diachronic.simulation.explorer import Finding, Mix, explore, generate, play, play_model, shrink
from diachronic.simulation.runner import Hang, Scenario, Sim, run_catalog, run_scenario
from diachronic.simulation.stories import WatchedWorld, explored

BUDGET = 12  # stories per defect: each was found within the first few in every seed tried


@pytest.fixture(autouse=True)
def quiet_temporal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")  # injected failures are the point, not news


# ----------------------------------------------------------------------------------------------- stories


def test_a_seed_draws_the_same_story_and_every_story_starts_with_a_deploy() -> None:
    for index in range(30):
        story = generate(random.Random(f"7:{index}"))
        assert story == generate(random.Random(f"7:{index}"))
        assert isinstance(story.actions[0], Deploy)
        assert 4 <= len(story) <= 12
    assert generate(random.Random("7:0")) != generate(random.Random("7:1"))


def test_a_story_prints_as_python_that_builds_the_same_story() -> None:
    namespace = {name: getattr(actions, name) for name in actions.__all__}
    for index in range(30):
        story = generate(random.Random(f"8:{index}"))
        assert eval(python_literal(story.start), namespace) == story.start
        assert eval(python_literal(list(story.actions)), namespace) == list(story.actions)


# ----------------------------------------------------------------------------------------------- defects
# Each test puts the old behaviour back (the planner function that decided, or a switch in the world) and asserts the
# explorer finds the broken invariant within its budget.


async def finds(invariant: str, mix: Mix, scenario: Callable[[Scenario], Scenario] | None = None) -> Finding:
    summary = await explore(seed=0, sequences=BUDGET, mix=mix, shrink_runs=0, stop_on_violation=True, scenario=scenario)
    found = {f.invariant: f for f in summary.findings}
    assert invariant in found, f"{summary.line()}: found {sorted(found)}, not {invariant}"
    return found[invariant]


def retire_without_live_again(snapshot: retire.RetireSnapshot) -> retire.RetirePlan:
    """Defect 1's rule: another live flag carrying the old queue (a redeploy made it live again) does not keep its
    workers; only running workflows and a queued deployment of the version do."""
    plan = PLAN_RETIRE(snapshot)
    if plan.kept_workers != retire.LIVE_AGAIN:
        return plan
    if snapshot.running_on_old_queue > 0:
        return retire.RetirePlan(retire.RetireBlocker.RUNNING)
    if snapshot.old.version_id in snapshot.deploying:
        return retire.RetirePlan(retire.RetireBlocker.DEPLOYING)
    return dataclasses.replace(plan, delete_workers=True, kept_workers=None)


PLAN_RETIRE = retire.plan_retire


async def test_defect_1_a_roll_back_by_redeploy_keeps_the_live_version_s_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retire, "plan_retire", retire_without_live_again)
    mix = Mix.only(deploy=4, finish_workflows=2, wait=3, kinds=(2, 5, 0))
    finding = await finds("live-workers-deleted", mix)
    assert any("deleting the workers of" in v.message for v in finding.found.violations)


@dataclass
class BlindWritesWorld(WatchedWorld):
    """Defect 2's flag store: a percentage write lands whatever the flag holds."""

    unconditional_writes: bool = True


def blind_writes(scenario: Scenario) -> Scenario:
    return replace(scenario, world=BlindWritesWorld)


async def test_defect_2_a_human_edit_between_the_automation_s_read_and_write_is_never_overwritten() -> None:
    mix = Mix.only(deploy=2, race_write=3, wait=3, kinds=(5, 2, 0))
    finding = await finds("blind-write", mix, scenario=blind_writes)
    assert any(isinstance(a, RaceWrite) for a in finding.found.story.actions)


CONTINUE_AS_NEW = temporalio.workflow.continue_as_new


def continue_as_new_forgetting_failures(arg: Any = None, *args: Any, **kwargs: Any) -> NoReturn:
    """Defect 3: the CI's failures are not carried into the run it continues as new into."""
    if isinstance(arg, CIInput) and arg.state is not None:
        arg = arg.model_copy(update={"state": arg.state.model_copy(update={"failed": 0, "failures": []})})
    CONTINUE_AS_NEW(arg, *args, **kwargs)


async def test_defect_3_a_failed_deployment_fails_its_run_across_continue_as_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(temporalio.workflow, "continue_as_new", continue_as_new_forgetting_failures)
    mix = Mix.only(deploy=4, fail=3, wait=2, tiny_history=1.0, failures=("flag-store-forbidden",))
    finding = await finds("failure-forgotten", mix)
    assert finding.found.story.start.ci_history is not None


PLAN_CHILDREN = deployment.plan_children


def children_one_after_the_other(snapshot: deployment.ChildrenSnapshot) -> deployment.ChildrenPlan:
    """Defect 5: the migration's end is looked at only once the rollout has ended."""
    rollout = snapshot.rollout
    if snapshot.stop is None and (rollout is None or rollout.state is deployment.ChildState.RUNNING):
        return deployment.ChildrenPlan(deployment.ChildrenAction.WAIT, Phase.ROLLING_OUT)
    return PLAN_CHILDREN(snapshot)


async def test_defect_5_a_failed_migration_stops_the_rollout_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployment, "plan_children", children_one_after_the_other)
    mix = Mix.only(deploy=2, fail=3, wait=3, kinds=(1, 0, 0), failures=("flag-store-forbidden",))
    finding = await finds("child-outlived", mix)
    assert any(isinstance(a, Fail) for a in finding.found.story.actions)


# ----------------------------------------------------------------------------------------------- the model
# Mode (b): the same stories against the planner alone. It finds a defect put back in the planner (or the flag store)
# in a fraction of the time, and a counter-example it finds is confirmed on the real workflows.

MODEL_BUDGET = 300  # stories: a few seconds


async def test_the_model_finds_no_violation_in_its_budget() -> None:
    summary = await explore(seed=0, sequences=MODEL_BUDGET, model=True, shrink_runs=0)
    assert summary.passed, "\n".join(f.python() for f in summary.findings)
    assert summary.steps > MODEL_BUDGET * 4  # stories of several actions each were played


async def test_the_model_finds_defect_1_and_the_workflows_confirm_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retire, "plan_retire", retire_without_live_again)
    mix = Mix.only(deploy=4, finish_workflows=2, wait=3, kinds=(2, 5, 0))
    summary = await explore(seed=0, sequences=MODEL_BUDGET, mix=mix, model=True, stop_on_violation=True)
    [finding] = [f for f in summary.findings if f.invariant == "live-workers-deleted"]
    assert finding.confirmed, finding.python()
    assert len(finding.best.story) <= len(finding.found.story)


async def test_the_model_finds_defect_2() -> None:
    mix = Mix.only(deploy=2, race_write=3, wait=3, kinds=(5, 2, 0))
    summary = await explore(
        seed=0,
        sequences=MODEL_BUDGET,
        mix=mix,
        model=True,
        stop_on_violation=True,
        shrink_runs=0,
        scenario=blind_writes,
    )
    assert "blind-write" in {f.invariant for f in summary.findings}, summary.line()


# ----------------------------------------------------------------------------------------------- shrinking


ROLL_BACK = Story(
    Start(running=3),
    (
        Deploy("v2", kind="non-migratory"),
        SetPercent("v9", 10),  # no such version: nothing happens
        Wait(30),
        StartWorkflows(1, lifetime=2),
        Deploy("v1"),
        Wait(300),
        FinishWorkflows("v1"),
        Wait(600),
    ),
)
"""Defect 1 (put back) with a few actions that do not matter to it."""


async def test_a_counter_example_shrinks_and_prints_as_a_scenario_that_fails_the_catalog_judgement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retire, "plan_retire", retire_without_live_again)  # defect 1 back
    name = "shrink-roll-back"

    async def still_fails(story: Story) -> bool:  # shrinking plays on the model (milliseconds), as --model does
        trial = await play_model(story, name)
        return any(v.invariant == "live-workers-deleted" for v in trial.violations)

    assert await still_fails(ROLL_BACK)
    smaller, runs = await shrink(ROLL_BACK, still_fails, max_runs=60)
    assert runs <= 60 and len(smaller) < len(ROLL_BACK)
    assert [a.version for a in smaller.actions if isinstance(a, Deploy)] == ["v2", "v1"]  # a roll-back stays
    assert not any(isinstance(a, SetPercent | StartWorkflows) for a in smaller.actions)  # what did not matter went

    trial = await play(smaller, name)  # on the workflows, which print it
    assert any(v.invariant == "live-workers-deleted" for v in trial.violations), trial.violations
    code = Finding("live-workers-deleted", trial).python()
    namespace: dict[str, object] = {"Phase": Phase, "explored": explored}
    namespace |= {n: getattr(actions, n) for n in actions.__all__}
    exec(code, namespace)
    scenario = namespace[re.sub(r"\W", "_", name).upper()]
    assert isinstance(scenario, Scenario) and scenario.name == name
    outcome = await run_scenario(scenario)
    assert any(p.startswith("safety: live-workers-deleted") for p in outcome.problems), outcome.problems


# ----------------------------------------------------------------------------------------------- stalls


def stalling(times: int) -> Callable[[Scenario], Scenario]:
    """The scenario's drive hangs the first ``times`` times it runs (as a stalled test server would make it)."""
    runs = 0

    def adjust(scenario: Scenario) -> Scenario:
        def drive(sim: Sim) -> Awaitable[None]:
            nonlocal runs
            runs += 1
            if runs <= times:
                raise Hang("simulated test-server stall")
            return scenario.drive(sim)

        return replace(scenario, drive=drive)

    return adjust


INITIAL = Story(Start(live=()), (Deploy("v1"),))


async def test_a_story_that_stalls_once_is_reported_as_retried_and_one_that_stalls_twice_fails() -> None:
    once = await play(INITIAL, "stall-once", scenario=stalling(1))
    assert once.retried == "simulated test-server stall" and once.violations == []
    twice = await play(INITIAL, "stall-twice", scenario=stalling(2))
    assert [v.invariant for v in twice.violations] == ["run-did-not-end"]

    summary = await explore(seed=3, sequences=1, mix=Mix.only(wait=1), scenario=stalling(1), shrink_runs=0)
    assert summary.retried and summary.line().endswith(", 1 retried after a test-server stall")


async def test_the_catalog_reports_a_scenario_retried_after_a_stall_and_fails_one_that_stalls_twice() -> None:
    initial = explored("catalog-stall", "initial", INITIAL.start, INITIAL.actions, phases=(Phase.COMPLETED,))
    once = stalling(1)(replace(initial, name="catalog-stall-once"))
    twice = stalling(2)(replace(initial, name="catalog-stall-twice"))
    report = await run_catalog([once, twice])
    assert [o.passed for o in report.outcomes] == [True, False]
    assert report.retried == ["catalog-stall-once"] and report.as_json()["retried"] == ["catalog-stall-once"]
    assert report.outcomes[1].hang == "simulated test-server stall"


# ----------------------------------------------------------------------------------------------- the command


def test_diachronic_explore_ends_with_the_summary_line_and_exits_non_zero_on_a_violation() -> None:
    command = [sys.executable, "-m", "diachronic.cli", "explore", "--seed", "5", "--sequences", "1"]
    command += ["--shrink-runs", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    last = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"1 sequences, (\d+) steps, (\d+) violations", last)
    assert match, done.stdout + done.stderr
    assert done.returncode == (1 if int(match[2]) else 0), done.stderr

    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=180)
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert summary["sequences"] == 1 and summary["seed"] == 5
    assert summary["violations"] == int(match[2])  # the same seed plays the same story
    assert as_json.returncode == done.returncode
