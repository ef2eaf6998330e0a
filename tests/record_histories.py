"""Record the Temporal histories the replay test checks: ``python -m tests.record_histories [canary]``.

Runs a migratory deployment (CI, rollout with continue-as-new, migration, health) and a non-migratory one (cleanup) on a
fresh dev server and writes each workflow's history to ``tests/histories/<type>.json``; with ``canary``, only a
migration with a canary cohort (``migrationCanary.json``: cohort, soak, rest). Re-record only when a workflow changes
on purpose (and then think about running deployments: a change that fails replay breaks them)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from examples.sleeper import FINISH_SIGNAL, Sleeper
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from tests.ci_helpers import ci_harness, event, fast

from diachronic.ci import client as ci
from diachronic.ci.contracts import CanaryOptions
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id
from diachronic.settings import venv_binary

OUT = Path(__file__).parent / "histories"


async def save(client: Client, workflow_id: str, name: str, run_id: str | None = None) -> None:
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    (OUT / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def record_canary() -> None:
    """A deployment whose migration moves a cohort of 2 of 5, soaks 1 s, then moves the rest."""
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(venv_binary("temporal")), data_converter=pydantic_data_converter
        )
        client, wf = env.client, "subscription"
        async with (
            ci_harness(client, Path(tmp), "ci") as h,
            Worker(client, task_queue=f"{wf}-v1", workflows=[Sleeper]),
            Worker(client, task_queue=f"{wf}-v2", workflows=[Sleeper]),
        ):
            await ci.deploy(client, h.task_queue, event(wf, "v1"))
            await client.get_workflow_handle(ci_workflow_id(wf)).result()
            for i in range(5):
                await client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=f"{wf}-v1")
            canary = CanaryOptions(size=2, soak_s=1)
            await ci.deploy(
                client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("50@0.5s,100@0.5s"), canary=canary)
            )
            await client.get_workflow_handle(ci_workflow_id(wf)).result()
            await save(client, f"migration.{wf}", "migrationCanary")
        await env.shutdown()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(venv_binary("temporal")), data_converter=pydantic_data_converter
        )
        client, wf = env.client, "subscription"
        async with ci_harness(client, Path(tmp), "ci") as h:
            workers = [Worker(client, task_queue=f"{wf}-{v}", workflows=[Sleeper]) for v in ("v1", "v2", "v3")]
            for w in workers:
                await w.__aenter__()
            await ci.deploy(client, h.task_queue, event(wf, "v1"))
            await client.get_workflow_handle(ci_workflow_id(wf)).result()
            for i in range(5):
                await client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=f"{wf}-v1")
            steps = parse_steps("50@0.5s,100@0.5s")
            await ci.deploy(client, h.task_queue, event(wf, "v2"), fast(steps=steps, continueAsNewAfter=30))
            result = await client.get_workflow_handle(ci_workflow_id(wf)).result()
            await save(client, ci_workflow_id(wf), "workflowCI")
            await save(client, f"migration.{wf}", "migration")
            await save(client, f"health.{wf}", "health")
            first_rollout = await client.get_workflow_handle(f"rollout.{wf}").describe()
            await save(client, f"rollout.{wf}", "rollout", first_rollout.run_id)
            await ci.deploy(client, h.task_queue, event(wf, "v3", isNonMigratory=True), fast(steps=steps))
            result = await client.get_workflow_handle(ci_workflow_id(wf)).result()
            cleanup_id = result["deployments"][0]["cleanupWorkflowId"]
            for i in range(5):
                await client.get_workflow_handle(f"{wf}-{i}").signal(FINISH_SIGNAL)
            await client.get_workflow_handle(cleanup_id).result()
            await save(client, cleanup_id, "cleanup")
            for w in workers:
                await w.__aexit__(None, None, None)
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record_canary() if sys.argv[1:] == ["canary"] else main())
