"""The CI worker: hosts the CI, rollout, migration, cleanup and health workflows, the freeze store, and their
activities."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from diachronic.backends import open_flag_store, open_workers
from diachronic.ci.activities import CIActivities
from diachronic.ci.cleanup import CleanupWorkflow
from diachronic.ci.freeze import FreezeActivities, FreezeWorkflow
from diachronic.ci.health import HealthWorkflow
from diachronic.ci.migration import MigrationWorkflow
from diachronic.ci.rollout import RolloutWorkflow
from diachronic.ci.workflow import CIWorkflow
from diachronic.metrics import MetricsInterceptor, serving
from diachronic.notify.activities import NotifyActivities
from diachronic.settings import Settings
from diachronic.temporal import connect

HEARTBEAT_THROTTLE = timedelta(seconds=1)
WORKFLOWS = [CIWorkflow, RolloutWorkflow, MigrationWorkflow, CleanupWorkflow, HealthWorkflow, FreezeWorkflow]
# The delivery pipeline's activities beside CIActivities' (the simulation fakes them from their contracts too).
PIPELINE_ACTIVITIES: list[Callable[..., Any]] = [NotifyActivities.publish_notification, FreezeActivities.read_freezes]


def ci_worker(
    client: Client,
    task_queue: str,
    activities: CIActivities,
    notify: NotifyActivities | None = None,
    freezes: FreezeActivities | None = None,
) -> Worker:
    """``notify``: where notifications go (default: nowhere); ``freezes``: the configured recurring windows."""
    notify = notify or NotifyActivities([], None, None)
    freezes = freezes or FreezeActivities(client, [])
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[*activities.all(), *notify.all(), *freezes.all()],
        max_concurrent_workflow_task_polls=10,
        # Temporal holds a heartbeat's details at most this old: a crashed sweep loses at most a second of pages.
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        interceptors=[MetricsInterceptor()],
    )


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the CI worker with the configured backends until ``stop`` is set."""
    client = await connect(settings)
    flags = open_flag_store(settings)
    deployments = open_workers(settings)
    notify = NotifyActivities.from_settings(settings)
    try:
        activities = CIActivities(flags, deployments, client, environment=settings.environment)
        freezes = FreezeActivities(client, settings.freeze_windows)
        with serving(settings.http_host, settings.metrics_port):
            async with ci_worker(client, settings.ci_task_queue, activities, notify, freezes):
                await stop.wait()
    finally:
        await flags.close()
        await deployments.close()
        await notify.close()
