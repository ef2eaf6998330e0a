"""The CI's activities on the embedded flag store (``ActivityEnvironment``: no Temporal server), I/O only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from diachronic.ci.activities import CIActivities
from diachronic.ci.contracts import ApplyFlagInput, ObserveDeploymentInput, SetPercentInput
from diachronic.flags.evaluation import general_percent
from diachronic.flags.local import LocalFlagStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalFlagStore]:
    flags = LocalFlagStore(tmp_path / "flags.sqlite3")
    yield flags
    await flags.close()


@pytest.fixture
def activities(store: LocalFlagStore) -> CIActivities:
    return CIActivities(store, None, None, environment="staging")  # type: ignore[arg-type]  # flags only here


async def run(activity: Any, arg: Any) -> Any:
    return await ActivityEnvironment().run(activity, arg)


async def test_applying_a_version_answers_the_flag_as_it_is_afterwards(activities: CIActivities) -> None:
    flag = await run(activities.apply_version_flag, ApplyFlagInput(workflow_name="wf", version_id="v1"))
    assert flag.info.flag_name == "workflow.wf.seqId.000.version.v1" and general_percent(flag) == 0


async def test_a_write_lands_only_on_the_value_read_and_a_retried_write_is_done(
    activities: CIActivities, store: LocalFlagStore
) -> None:
    flag = await run(activities.apply_version_flag, ApplyFlagInput(workflow_name="wf", version_id="v1"))
    write = SetPercentInput(flag_name=flag.info.flag_name, percent=25, expected=0)
    await run(activities.set_traffic_percent, write)
    await run(activities.set_traffic_percent, write)  # Temporal's retry after a lost reply: already 25, done
    await store.set_general_percent(flag.info.flag_name, 30)  # a human
    with pytest.raises(ApplicationError) as refused:
        await run(
            activities.set_traffic_percent, SetPercentInput(flag_name=flag.info.flag_name, percent=50, expected=25)
        )
    assert refused.value.type == "ConcurrentEdit" and refused.value.non_retryable
    [now] = await store.list_version_flags("wf")
    assert general_percent(now) == 30


async def test_observing_a_deployment_names_the_served_environment_and_task_queue_twins(
    activities: CIActivities, store: LocalFlagStore
) -> None:
    await store.apply_version_flag("orders", "a-b")
    observe = activities.observe_deployment
    observed = await run(observe, ObserveDeploymentInput(workflow_name="orders-a", version_id="b"))
    assert observed.environment == "staging" and observed.flags == []
    assert [(t.workflow_name, t.version_id, t.task_queue) for t in observed.twins] == [("orders", "a-b", "orders-a-b")]
    mine = await run(observe, ObserveDeploymentInput(workflow_name="orders", version_id="c"))
    assert mine.twins == [] and [f.info.version_id for f in mine.flags] == ["a-b"]
