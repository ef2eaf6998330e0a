"""Property: for any seed and any failure rate up to 0.3, with failures that may be permanent, every scenario
either reaches its expected end or ends with a clear typed failure (one of the injected permanent errors), and
never hangs (bounded virtual time), never delivers a second migrate signal to a run, never deletes the workers of a
live version (the fake world referees both). A failing example prints the command that replays it."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from diachronic.simulation.fakes import FailurePolicy
from diachronic.simulation.runner import Scenario, run_scenario
from diachronic.simulation.scenarios import CATALOG, select

EXAMPLES = 12  # each runs one scenario on its own server, about half a second


@pytest.fixture(autouse=True)
def quiet_temporal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking a seed teaches nothing; the replay command does
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    scenario=st.sampled_from(CATALOG),
    seed=st.integers(min_value=0, max_value=2**31),
    rate=st.floats(min_value=0.0, max_value=0.3),
    permanent=st.booleans(),
)
async def test_every_scenario_ends_as_expected_or_with_a_typed_failure(
    scenario: Scenario, seed: int, rate: float, permanent: bool
) -> None:
    replay = f"diachronic simulate --scenario {scenario.name} --seed {seed} --failure-rate {rate!r}" + (
        " --permanent-failures" if permanent else ""
    )
    note(replay)
    outcome = await run_scenario(
        scenario,
        seed=seed,
        failures=FailurePolicy(rate=rate, retryable=None if permanent else True),
        allow_typed_failure=permanent,
    )
    assert outcome.hang is None, f"hang: {outcome.hang}\nreplay: {replay}"
    assert not outcome.world.violations, f"{outcome.world.violations}\nreplay: {replay}"
    assert max(outcome.world.delivered.values(), default=0) <= 1
    assert outcome.passed, f"{outcome.problems}\nreplay: {replay}"
    if outcome.typed_failure:
        assert outcome.typed_failure.split(":", 1)[0] in outcome.fakes.permanent_errors()
    assert outcome.virtual_s <= scenario.max_virtual_s


async def test_a_child_ending_as_it_is_stopped_never_stalls_the_ci() -> None:
    """An example the property drew: the migration and the health workflow fail for good at once, and the CI asks
    the migration to cancel as it ends. The test server never answers that cancel; the CI waited for the answer until
    its run timed out (one run in two, retried or not). It waits for the children's ends instead."""
    scenario = select("migration-fails-first")[0]
    policy = FailurePolicy(rate=0.146873383545579, retryable=None)
    for _ in range(8):
        outcome = await run_scenario(
            scenario, seed=954608919, failures=policy, allow_typed_failure=True, retry_stalls=False
        )
        assert outcome.hang is None
        assert outcome.passed, outcome.problems


async def test_a_cleanup_that_fails_for_good_ends_the_story() -> None:
    """An example the property drew: v1's cleanup fails for good while ``new-workers-gone`` waits for it to hold.
    Nothing is scheduled any more, so each of the story's waits took real time (an hour of them); it stops waiting
    once the cleanup has ended, and the story ends with that typed failure."""
    outcome = await run_scenario(
        select("new-workers-gone")[0],
        seed=2089548290,
        failures=FailurePolicy(rate=0.0212250419757927, retryable=None),
        allow_typed_failure=True,
        retry_stalls=False,
    )
    assert outcome.hang is None
    assert outcome.passed, outcome.problems
    assert outcome.typed_failure is not None
