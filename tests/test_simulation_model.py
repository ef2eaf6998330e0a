"""The model of the CI (the explorer's fast mode): the planner's decisions executed over the simulation's world, in
milliseconds; it ends deployments as the workflows do (checked on the same stories), and the referee watches it."""

from __future__ import annotations

import logging

import pytest

from diachronic.ci.contracts import HealthRule, Phase
from diachronic.simulation.actions import (
    Break,
    Control,
    Deploy,
    RaceWrite,
    Rollback,
    Start,
    Story,
    Wait,
    WorkersDown,
    WorkersUp,
)
from diachronic.simulation.model import run_model
from diachronic.simulation.runner import run_scenario
from diachronic.simulation.stories import explored
from diachronic.simulation.world import FlagEnd


@pytest.fixture(autouse=True)
def quiet_temporal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")


INITIAL = Story(Start(live=()), (Deploy("v1"),))
MIGRATORY = Story(Start(running=4), (Deploy("v2", batch_size=2),))
ABORTED = Story(Start(running=2), (Deploy("v2"), Wait(70), Control("abort")))
EDITED = Story(Start(running=2), (Deploy("v2"), Wait(30), RaceWrite("v2", 30)))
DARK = Story(Start(), (Deploy("v2", kind="dark"), Wait(600)))
NOT_READY = Story(Start(running=2), (Deploy("v2", workers="never"),))
GATE_FAILS = Story(Start(running=2), (Deploy("v2", gate="fail"),))
GATED = Story(
    Start(running=2),
    (
        Deploy("v2", poll_s=20.0, workers="late", gate="pass", gate_every_step=True),
        Wait(60),
        WorkersUp("v2"),
        Wait(90),  # past the first step and the gate before the second
        Break("v2", HealthRule.TASK_PROBLEMS),
        Wait(60),
    ),
)
"""Late workers, a gate before every step, then the version breaks: the health child aborts, the flag back to 0."""
ROLLED_BACK = Story(Start(running=2), (Deploy("v2", batch_size=1), Wait(130), Rollback("50@30s,100@30s")))
REDEPLOYED = Story(Start(running=2), (Deploy("v2"), Wait(30), Deploy("v1", batch_size=1)))
"""v1 redeployed while v2 rolls out: queued, then a roll-back by redeploy (v1 was live minutes ago), which moves the
workflows that moved to v2 nowhere."""
WORKERS_GONE = Story(Start(running=2), (Deploy("v2", steps="50@30s,100@30s"), WorkersDown("v1"), Wait(120)))


def test_an_initial_deployment_routes_everything_to_the_new_version() -> None:
    run = run_model(INITIAL, "model-s0")
    assert run.phases == [Phase.COMPLETED] and run.violations == [] and not run.ci_failed
    assert run.world.flag_table() == ["v1@100%/live"]


def test_a_migratory_deployment_moves_every_workflow_once_and_retires_the_old_version() -> None:
    run = run_model(MIGRATORY, "model-s0")
    assert run.phases == [Phase.COMPLETED] and run.violations == []
    assert run.world.flag_table() == ["v2@100%/live", "v1@100%/archived"]
    assert run.world.running_by_version() == {"v2": 4}
    assert sorted(run.world.delivered.values()) == [1, 1, 1, 1]
    assert run.world.worker_versions() == {"v2"}


def test_an_abort_routes_back_and_retires_nothing() -> None:
    run = run_model(ABORTED, "model-s0")
    assert run.phases == [Phase.ABORTED] and run.violations == []
    assert [FlagEnd("v2", 0).matches(f) for f in run.world.flags_newest_first()][:1] == [True]
    assert run.world.worker_versions() == {"v1", "v2"}


def test_a_person_s_edit_between_read_and_write_stays_and_the_settling_person_cancels() -> None:
    run = run_model(EDITED, "model-s0")
    assert run.violations == [] and run.phases == [Phase.CANCELLED]
    assert run.world.flag_table()[0] == "v2@30%/live"


def test_the_gates_end_a_deployment_as_they_say() -> None:
    assert run_model(NOT_READY, "model-s0").phases == [Phase.FAILED]  # WorkersNotReady, nothing created
    assert run_model(GATE_FAILS, "model-s0").phases == [Phase.ABORTED]
    for story in (GATED, ROLLED_BACK):
        run = run_model(story, "model-s0")
        assert run.phases == [Phase.ABORTED] and run.violations == []
        assert [FlagEnd("v2", 0).matches(f) for f in run.world.flags_newest_first()][:1] == [True]


def test_a_redeploy_of_a_recently_live_version_moves_no_workflow() -> None:
    run = run_model(REDEPLOYED, "model-s0")
    assert run.phases == [Phase.COMPLETED, Phase.COMPLETED] and run.violations == []
    assert run.world.running_by_version() == {"v2": 2}


def test_workers_going_away_strand_nothing_the_referee_blames_on_the_ci() -> None:
    run = run_model(WORKERS_GONE, "model-s0")
    assert run.violations == [] and run.phases == [Phase.COMPLETED]


STORIES = [
    *(INITIAL, MIGRATORY, ABORTED, EDITED, DARK),
    *(NOT_READY, GATE_FAILS, GATED, ROLLED_BACK, REDEPLOYED, WORKERS_GONE),
]


@pytest.mark.parametrize("story", STORIES, ids=lambda s: str(s.actions[-1]))
async def test_the_model_ends_a_story_as_the_workflows_do(story: Story) -> None:
    on_workflows = await run_scenario(explored("agree", "the same story on both", story.start, story.actions))
    on_model = run_model(story, "agree-s0")  # the world's name on the workflows: the same routing
    assert on_model.phases == on_workflows.phases
    assert on_model.world.flag_table() == on_workflows.world.flag_table()
    assert on_model.world.worker_versions() == on_workflows.world.worker_versions()
    assert on_model.world.running_by_version() == on_workflows.world.running_by_version()
