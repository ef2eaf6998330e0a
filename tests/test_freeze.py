"""The freeze store (one workflow per scope, in Temporal) and its commands: set, replace, read, lift, expire;
the activity the CI reads freezes with; ``diachronic freeze / unfreeze / freezes`` as a user runs them."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.ci_helpers import run_diachronic
from tests.pipeline_workflows import FreezeWindowWorkflow, WindowCheck

from diachronic.ci.freeze import (
    FreezeActivities,
    FreezeWorkflow,
    ReadFreezesInput,
    freeze_workflow_id,
    lift_freeze,
    read_freezes,
    set_freeze,
)
from diachronic.ci.planner.freeze import ALL, Freeze, FreezeWindow
from diachronic.cli.freeze import parse_until
from diachronic.errors import InvalidInput, NotFound

ALWAYS = FreezeWindow(cron="* * * * *", duration="1h", reason="always")


@pytest.fixture
async def store(time_env: WorkflowEnvironment) -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    queue = f"freeze-{uuid.uuid4()}"
    async with Worker(time_env.client, task_queue=queue, workflows=[FreezeWorkflow]):
        yield time_env, queue


async def test_a_freeze_is_set_replaced_read_and_lifted(store: tuple[WorkflowEnvironment, str]) -> None:
    env, queue = store
    wf, other = "fz" + uuid.uuid4().hex[:8], "fz" + uuid.uuid4().hex[:8]
    now = await env.get_current_time()
    first = await set_freeze(env.client, queue, wf, now + timedelta(hours=1), "incident 42")
    assert first == Freeze(scope=wf, until=now + timedelta(hours=1), reason="incident 42")
    assert await read_freezes(env.client, wf) == [first]
    assert await read_freezes(env.client, other) == []
    later = await set_freeze(env.client, queue, wf, now + timedelta(hours=3), "incident 42, still")
    assert await read_freezes(env.client, wf) == [later]
    assert await lift_freeze(env.client, wf, "fixed") == later
    assert await read_freezes(env.client, wf) == []
    with pytest.raises(NotFound, match=f"{wf} is not frozen"):
        await lift_freeze(env.client, wf)


async def test_a_freeze_of_every_workflow_applies_to_each(store: tuple[WorkflowEnvironment, str]) -> None:
    env, queue = store
    now = await env.get_current_time()
    everything = await set_freeze(env.client, queue, ALL, now + timedelta(hours=1), "release freeze")
    try:
        assert await read_freezes(env.client, "fz" + uuid.uuid4().hex[:8]) == [everything]
        reading = await FreezeActivities(env.client, [ALWAYS]).read_freezes(ReadFreezesInput(workflow_name="any"))
        assert (reading.freezes, reading.windows) == ([everything], [ALWAYS])
    finally:
        await lift_freeze(env.client, ALL)


async def test_a_freeze_ends_by_itself_at_its_time(store: tuple[WorkflowEnvironment, str]) -> None:
    env, queue = store
    wf = "fz" + uuid.uuid4().hex[:8]
    now = await env.get_current_time()
    await set_freeze(env.client, queue, wf, now + timedelta(minutes=10), "maintenance")
    handle = env.client.get_workflow_handle(freeze_workflow_id(wf))
    await env.sleep(timedelta(minutes=11))
    assert (await handle.result()) is not None
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert await read_freezes(env.client, wf) == []


async def test_a_freeze_in_the_past_or_without_a_reason_is_refused(store: tuple[WorkflowEnvironment, str]) -> None:
    env, queue = store
    wf = "fz" + uuid.uuid4().hex[:8]
    now = await env.get_current_time()
    with pytest.raises(InvalidInput, match="is not in the future"):
        await set_freeze(env.client, queue, wf, now - timedelta(minutes=1), "too late")
    with pytest.raises(ValueError, match="at least 1 character"):
        await set_freeze(env.client, queue, wf, now + timedelta(minutes=1), "")
    with pytest.raises(ValueError, match="workflow name"):
        await set_freeze(env.client, queue, "orders.v2", now + timedelta(minutes=1), "r")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", datetime(2026, 11, 29, 11, tzinfo=UTC)),
        ("+30m", datetime(2026, 11, 29, 9, 30, tzinfo=UTC)),
        ("2026-12-01T18:00Z", datetime(2026, 12, 1, 18, tzinfo=UTC)),
        ("2026-12-01T18:00:00+01:00", datetime(2026, 12, 1, 17, tzinfo=UTC)),
    ],
)
def test_until_is_an_iso_time_or_a_delay(text: str, expected: datetime) -> None:
    assert parse_until(text, datetime(2026, 11, 29, 9, tzinfo=UTC)) == expected


def test_a_bad_until_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="neither an ISO time"):
        parse_until("tomorrow", datetime.now(UTC))


# ------------------------------------------------------------------------------------------------ the commands


async def cli(env: WorkflowEnvironment, queue: str, *args: str, windows: str = "[]") -> tuple[int, str, str]:
    return await run_diachronic(env.client, queue, *args, DIACHRONIC_FREEZE_WINDOWS=windows)


@pytest.mark.devserver
async def test_freeze_freezes_and_unfreeze_as_a_user_runs_them(dev_env: WorkflowEnvironment) -> None:
    queue = f"freeze-{uuid.uuid4()}"
    wf = "fz" + uuid.uuid4().hex[:8]
    async with Worker(dev_env.client, task_queue=queue, workflows=[FreezeWorkflow]):
        code, _, err = await cli(dev_env, queue, "freeze", wf, "--until", "+2h", "--reason", "incident 42")
        assert code == 0 and f"{wf} frozen until" in err and "incident 42" in err, err
        code, out, err = await cli(dev_env, queue, "freezes", "--json")
        assert code == 0, err
        [mine] = [f for f in json.loads(out) if f["scope"] == wf]
        assert (mine["reason"], mine["source"]) == ("incident 42", "command")
        code, out, _ = await cli(dev_env, queue, "freezes", wf, windows=ALWAYS.model_dump_json().join("[]"))
        assert code == 0 and out.startswith(f"{wf} frozen until") and out.rstrip().endswith("incident 42"), out
        code, out, _ = await cli(dev_env, queue, "freezes", windows=ALWAYS.model_dump_json().join("[]"))
        assert "every workflow frozen until" in out and "(window): always" in out, out

        for args, problem in (
            (["freeze", wf, "--all", "--until", "+1h", "--reason", "r"], "name a WORKFLOW or give --all"),
            (["freeze", wf, "--until", "+1h"], "needs --until T and --reason R"),
            (["freeze", wf, "--until", "soon", "--reason", "r"], "invalid --until"),
            (["freeze", "--all", "--until", "2020-01-01T00:00Z", "--reason", "r"], "is not in the future"),
        ):
            code, _, err = await cli(dev_env, queue, *args)
            assert code == 1 and problem in err, (args, err)

        code, _, err = await cli(dev_env, queue, "unfreeze", wf, "--reason", "fixed")
        assert code == 0 and f"lifted: {wf} frozen until" in err, err
        code, _, err = await cli(dev_env, queue, "unfreeze", wf)
        assert code == 1 and f"{wf} is not frozen" in err, err
        code, out, _ = await cli(dev_env, queue, "freezes", wf)
        assert (code, out.strip()) == (0, "nothing is frozen")


async def test_windows_are_evaluated_inside_the_workflow_sandbox(time_env: WorkflowEnvironment) -> None:
    queue = f"window-{uuid.uuid4()}"
    paris = FreezeWindow(cron="* * * * *", duration="1h", reason="always", timezone="Europe/Paris")
    async with Worker(time_env.client, task_queue=queue, workflows=[FreezeWindowWorkflow]):
        found = await time_env.client.execute_workflow(
            FreezeWindowWorkflow.run, WindowCheck(windows=[paris]), id=f"window-{uuid.uuid4()}", task_queue=queue
        )
    assert found is not None and (found.reason, found.source) == ("always", "window")
