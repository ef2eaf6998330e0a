"""Fakes from contracts for a user's own workflow: the subscription sample's ``charge`` activity is replaced by a
fake generated from its models, failing a quarter of the time, and a year of monthly renewals runs in virtual
time; and the deployment scenario ``docs/simulation.md`` shows a user, run as written."""

from __future__ import annotations

import logging
import re
import types
import uuid
from pathlib import Path

import pytest
from examples.subscription import v1
from examples.subscription.activities import charge
from examples.subscription.shared import Receipt, SubscriptionStart
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from diachronic.simulation.fakes import ContractFakes, FailurePolicy, activity_contracts
from diachronic.simulation.runner import run_scenario


async def test_a_year_of_renewals_with_a_generated_flaky_charge(
    time_env: WorkflowEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")
    fakes = ContractFakes(activity_contracts([charge]), seed=4, policy=FailurePolicy(rate=0.25))
    task_queue = f"own-{uuid.uuid4()}"
    async with Worker(
        time_env.client, task_queue=task_queue, workflows=[v1.SubscriptionWorkflow], activities=fakes.activities()
    ):
        handle = await time_env.client.start_workflow(
            v1.SubscriptionWorkflow.run,
            SubscriptionStart(customer_id="c-1", plan="basic", price_cents=900),
            id=f"sub-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        await time_env.sleep(366 * 24 * 3600 + 60)  # a year and a minute: twelve monthly renewals are due
        status = await handle.query(v1.SubscriptionWorkflow.status)
        await handle.signal(v1.SubscriptionWorkflow.cancel)
        result = await handle.result()
    assert result.renewals == status["state"]["renewals"] == 12
    assert fakes.called()["charge"] == 12 + sum(fakes.failed().values())  # every failure was retried
    assert sum(fakes.failed().values()) > 0
    assert fakes.contracts["charge"].output is Receipt


DOCS = Path(__file__).parent.parent / "docs" / "simulation.md"


def docs_example() -> types.ModuleType:
    """The scenario module ``docs/simulation.md`` shows a user (``# mypkg/deploy_scenarios.py``), as written."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    [source] = [b for b in blocks if b.startswith("# mypkg/deploy_scenarios.py")]
    module = types.ModuleType("deploy_scenarios")
    exec(compile(source, str(DOCS), "exec"), module.__dict__)
    return module


async def test_the_scenario_the_docs_show_runs_and_passes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")
    [scenario] = docs_example().SCENARIOS
    outcome = await run_scenario(scenario, failures=FailurePolicy(rate=0.2), seed=7)
    assert outcome.passed, outcome.problems
    assert outcome.virtual_s > 3600  # the hour-long pause happened, in virtual time
