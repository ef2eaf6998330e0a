"""The CI worker: hosts the CI, rollout, migration and cleanup workflows and their activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from diachronic.ci.activities import CIActivities
from diachronic.ci.drain import CleanupWorkflow, MigrationWorkflow
from diachronic.ci.rollout import RolloutWorkflow
from diachronic.ci.workflow import CIWorkflow

WORKFLOWS = [CIWorkflow, RolloutWorkflow, MigrationWorkflow, CleanupWorkflow]


def ci_worker(client: Client, task_queue: str, activities: CIActivities) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        max_concurrent_workflow_task_polls=10,
    )
