"""What the benchmarks share: messages, deploy events, the load average, Temporal's own batch signal, histories."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from diachronic.ci.activities import CIActivities
from diachronic.ci.planner.sweep import SweepProgress
from diachronic.contracts import MIGRATE_SIGNAL, DeployEvent
from diachronic.settings import Settings, venv_binary

ROOT = Path(__file__).resolve().parent.parent
SWEEP_ACTIVITY = CIActivities.migrate_sweep.__name__


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def deploy_event(workflow: str, version: str) -> DeployEvent:
    """A deploy event for the environment the benchmarks' CI serves (the default one)."""
    return DeployEvent(
        workflow_name=workflow,
        version_id=version,
        sha=version,
        environment=Settings.model_fields["environment"].default,
        event_time=datetime.now(UTC),
    )


def load_averages() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` shows them."""
    one, five, fifteen = (float(v) for v in Path("/proc/loadavg").read_text().split()[:3])
    return one, five, fifteen


def load_average() -> float:
    """The 1-minute load average."""
    return load_averages()[0]


def batch_signal(address: str, old_queue: str, new_queue: str, count: int) -> float:
    """Temporal's own server-side batch signal (``temporal workflow signal --query``) at its default rate:
    operations per second between the batch job's start and close, as the server records them."""
    temporal = str(venv_binary("temporal"))
    out = subprocess.run(
        [
            temporal,
            "workflow",
            "signal",
            "--address",
            address,
            "--query",
            f'TaskQueue="{old_queue}" AND ExecutionStatus="Running"',
            "--name",
            MIGRATE_SIGNAL,
            "--input",
            json.dumps({"taskQueue": new_queue}),
            "--reason",
            "bench",
            "--yes",
            "-o",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    job_id = json.loads(out)["batchJobId"]
    while True:
        time.sleep(0.5)
        answer = subprocess.run(
            [temporal, "batch", "describe", "--address", address, "--job-id", job_id, "-o", "json"],
            capture_output=True,
            text=True,
        )
        if answer.returncode != 0:  # the job is not visible yet
            continue
        described = json.loads(answer.stdout)
        if described.get("closeTime") and int(described.get("completeOperationCount", 0)) >= count:
            break
    started = datetime.fromisoformat(described["startTime"].replace("Z", "+00:00"))
    closed = datetime.fromisoformat(described["closeTime"].replace("Z", "+00:00"))
    return int(described["completeOperationCount"]) / (closed - started).total_seconds()


@dataclass(frozen=True)
class SweepCall:
    """One completed call of the migrate activity, from the migration workflow's history."""

    started: datetime
    completed: datetime
    progress: SweepProgress


@dataclass
class Histories:
    """What the histories of some workflows (every run of each) hold."""

    sweeps: list[SweepCall] = field(default_factory=list)
    events: dict[str, list[HistoryEvent]] = field(default_factory=dict)  # by "<workflow id>/<run id>"

    @property
    def longest(self) -> int:
        return max((len(events) for events in self.events.values()), default=0)

    @property
    def largest_event_bytes(self) -> int:
        """The largest event (its payloads and all): an upper bound of the largest payload."""
        return max((event.ByteSize() for events in self.events.values() for event in events), default=0)


async def read_histories(client: Client, workflow_ids: list[str]) -> Histories:
    """Every run of each workflow, and the migrate activity's calls among their events."""
    found = Histories()
    for workflow_id in workflow_ids:
        async for execution in client.list_workflows(f'WorkflowId="{workflow_id}"'):
            history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            found.events[f"{execution.id}/{execution.run_id}"] = list(history.events)
            found.sweeps += _sweep_calls(history.events)
    found.sweeps.sort(key=lambda call: call.started)
    return found


def _sweep_calls(events: Sequence[HistoryEvent]) -> list[SweepCall]:
    names: dict[int, str] = {}
    started: dict[int, datetime] = {}
    calls = []
    for event in events:
        when = event.event_time.ToDatetime(tzinfo=UTC)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            if names.get(attrs.scheduled_event_id) == SWEEP_ACTIVITY:
                progress = SweepProgress.model_validate_json(attrs.result.payloads[0].data)
                calls.append(SweepCall(started[attrs.scheduled_event_id], when, progress))
    return calls
