"""The CI worker: hosts the CI, rollout, migration, cleanup and health workflows, the freeze store, and their
activities."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.worker import Worker

from diachronic.backends import open_flag_store, open_workers
from diachronic.ci.activities import CIActivities
from diachronic.ci.cleanup import CleanupWorkflow
from diachronic.ci.freeze import FreezeWorkflow
from diachronic.ci.health import HealthWorkflow
from diachronic.ci.migration import MigrationWorkflow
from diachronic.ci.rollout import RolloutWorkflow
from diachronic.ci.workflow import CIWorkflow
from diachronic.metrics import MetricsInterceptor, serving
from diachronic.settings import Settings
from diachronic.temporal import connect

WORKFLOWS = [CIWorkflow, RolloutWorkflow, MigrationWorkflow, CleanupWorkflow, HealthWorkflow, FreezeWorkflow]


def ci_worker(client: Client, task_queue: str, activities: CIActivities) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        max_concurrent_workflow_task_polls=10,
        interceptors=[MetricsInterceptor()],
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the CI worker with the configured backends until ``stop`` is set."""
    client = await connect(settings)
    flags = open_flag_store(settings)
    deployments = open_workers(settings)
    try:
        activities = CIActivities(flags, deployments, client, environment=settings.environment)
        with serving(settings.http_host, settings.metrics_port):
            async with ci_worker(client, settings.ci_task_queue, activities):
                await stop.wait()
    finally:
        await flags.close()
        await deployments.close()
