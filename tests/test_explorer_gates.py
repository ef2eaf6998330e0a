"""The explorer covers the gates (issue 14): its default stories deploy versions whose workers come up late or never,
with a gate that passes or fails, break versions (the health child's automatic abort) and roll back; a defect put
back in readiness or in the abort's route back is found within a small fixed budget, on the real CI workflows and on
the model of the CI (tests/test_simulation_model.py plays the gates' stories on both). Budgets are counted in
stories."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator

import pytest

from diachronic.ci.contracts import Phase
from diachronic.ci.planner import deployment, readiness
from diachronic.simulation import actions
from diachronic.simulation.actions import Break, Deploy, Rollback, Wait
from diachronic.simulation.explorer import Finding, Mix, explore, generate
from diachronic.simulation.runner import Scenario
from diachronic.simulation.stories import explored

BUDGET = 8  # stories per defect on the workflows: each was found within the first five in every seed tried
MODEL_BUDGET = 100
READINESS = Mix.only(deploy=3, workers_up=2, wait=2, workers=(1, 2, 1))
ABORTS = Mix.only(deploy=2, break_version=2, rollback=1, control=1, wait=3, kinds=(1, 0, 0))


@pytest.fixture(autouse=True)
def quiet_temporal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")  # injected failures are the point, not news


def drawn(seed: int, stories: int) -> Iterator[actions.Action]:
    for index in range(stories):
        yield from generate(random.Random(f"{seed}:{index}")).actions


def test_the_default_mix_draws_late_and_missing_workers_gates_breaks_and_roll_backs() -> None:
    kinds = Counter(type(a).__name__ for a in drawn(11, 100))
    deploys = [a for a in drawn(11, 100) if isinstance(a, Deploy)]
    assert {"WorkersUp", "WorkersDown", "Break", "Rollback"} <= set(kinds), kinds
    assert {d.workers for d in deploys} == {"up", "late", "never"}
    assert {d.gate for d in deploys} == {None, "pass", "fail"} and any(d.gate_every_step for d in deploys)
    assert {a.steps is None for a in drawn(11, 100) if isinstance(a, Rollback)} == {True, False}


def test_a_narrowed_mix_draws_none_of_them_unless_asked() -> None:
    mix = Mix.only(deploy=3, wait=2)
    story_actions = [a for i in range(50) for a in generate(random.Random(f"12:{i}"), mix).actions]
    assert {type(a) for a in story_actions} <= {Deploy, Wait}
    assert all(a.workers == "up" and a.gate is None for a in story_actions if isinstance(a, Deploy))


# ----------------------------------------------------------------------------------------------- defects
# Each test puts an old behaviour back in the planner and asserts the explorer finds the broken invariant.


def ready_at_once(snapshot: readiness.ReadinessSnapshot) -> readiness.ReadinessPlan:
    """Readiness skipped: the CI goes on whether or not a worker polls the new queue."""
    return readiness.ReadinessPlan(readiness.ReadinessAction.PROCEED)


def never_route_back(observed: object, percent: int = 0) -> deployment.RouteBack | None:
    """An abort that does not zero the percentage: nothing to write, whatever the flag holds."""
    return None


async def finds(invariant: str, mix: Mix, *, model: bool = False) -> Finding:
    budget = MODEL_BUDGET if model else BUDGET
    summary = await explore(seed=0, sequences=budget, mix=mix, model=model, shrink_runs=0, stop_on_violation=True)
    found = {f.invariant: f for f in summary.findings}
    assert invariant in found, f"{summary.line()}: found {sorted(found)}, not {invariant}"
    return found[invariant]


@pytest.mark.parametrize("model", [False, True], ids=["workflows", "model"])
async def test_readiness_skipped_is_found(monkeypatch: pytest.MonkeyPatch, model: bool) -> None:
    monkeypatch.setattr(readiness, "plan_readiness", ready_at_once)
    finding = await finds("unready-traffic", READINESS, model=model)
    assert any(isinstance(a, Deploy) and a.workers != "up" for a in finding.found.story.actions)
    assert not model or finding.confirmed, finding.python()


@pytest.mark.parametrize("model", [False, True], ids=["workflows", "model"])
async def test_an_abort_that_leaves_the_percentage_is_found(monkeypatch: pytest.MonkeyPatch, model: bool) -> None:
    monkeypatch.setattr(deployment, "plan_route_back", never_route_back)
    finding = await finds("abort-not-routed-back", ABORTS, model=model)
    assert any(isinstance(a, Break | Rollback) for a in finding.found.story.actions), finding.python()
    assert not model or finding.confirmed, finding.python()
    assert pasted(finding).name == finding.best.name  # the counter-example pastes into the catalog


def pasted(finding: Finding) -> Scenario:
    """The finding's printed scenario, executed as the catalog module would (its names in scope)."""
    namespace: dict[str, object] = {"Phase": Phase, "explored": explored}
    namespace |= {name: getattr(actions, name) for name in actions.__all__}
    exec(finding.python(), namespace)
    [scenario] = [v for v in namespace.values() if isinstance(v, Scenario)]
    return scenario
