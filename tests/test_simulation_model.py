"""The model of the CI (the explorer's fast mode): the planner's decisions executed over the simulation's world, in
milliseconds; it ends deployments as the workflows do (checked on the same stories), and the referee watches it."""

from __future__ import annotations

import logging

import pytest

from diachronic.ci.contracts import Phase
from diachronic.simulation.actions import Control, Deploy, RaceWrite, Start, Story, Wait
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


@pytest.mark.parametrize("story", [INITIAL, MIGRATORY, ABORTED, EDITED, DARK], ids=lambda s: str(s.actions[-1]))
async def test_the_model_ends_a_story_as_the_workflows_do(story: Story) -> None:
    on_workflows = await run_scenario(explored("agree", "the same story on both", story.start, story.actions))
    on_model = run_model(story, "agree-s0")  # the world's name on the workflows: the same routing
    assert on_model.phases == on_workflows.phases
    assert on_model.world.flag_table() == on_workflows.world.flag_table()
    assert on_model.world.worker_versions() == on_workflows.world.worker_versions()
    assert on_model.world.running_by_version() == on_workflows.world.running_by_version()
