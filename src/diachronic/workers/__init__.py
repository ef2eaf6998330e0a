"""The worker sets port: find and delete the workers that serve one version of a workflow.

The CI deletes the workers of an old version once nothing runs on its task queue. A version's workers are
whatever carries both labels ``diachronic/workflow-name=<workflowName>`` and
``diachronic/version-id=<versionId>`` (the original's Kubernetes labels, docs/architecture.md), matched exactly:
something missing either label is never touched.

Implementations: ``diachronic.workers.local`` (worker processes started by diachronic itself, the embedded
default) and ``diachronic.workers.kubernetes`` (Deployments in a cluster). Both raise ``WorkersError``
for backend failures (``retryable`` says whether trying again can help) and ``InvalidInput`` for bad names.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from diachronic.contracts import Contract, check_name
from diachronic.errors import InvalidInput

__all__ = [
    "LABEL_VERSION",
    "LABEL_WORKFLOW",
    "TASK_QUEUE_ENV",
    "WorkerBackend",
    "WorkerSet",
    "check_names",
    "label_selector",
    "labels_match",
    "worker_labels",
]

TASK_QUEUE_ENV = "DIACHRONIC_TASK_QUEUE"
"""Where a worker finds its task queue (``<workflowName>-<versionId>``), in every backend."""
LABEL_WORKFLOW = "diachronic/workflow-name"
LABEL_VERSION = "diachronic/version-id"


class WorkerSet(Contract):
    """The workers of one version, as a backend reports them; pass it back to ``delete``.

    ``running`` means at least one worker process (pod) is up right now; a deployment that exists but runs
    nothing is still reported, so that ``delete`` can remove it. ``uid`` names this incarnation (Kubernetes
    ``metadata.uid``, local ``<pid>@<start time>``): ``delete`` leaves alone a same-named deployment created
    since. ``pid`` and ``log_path`` are local-only.
    """

    name: str
    namespace: str
    uid: str | None = None
    labels: dict[str, str]
    task_queue: str | None = None
    running: bool
    replicas: int | None = None
    started_at: datetime | None = None
    pid: int | None = None
    log_path: str | None = None

    @property
    def workflow_name(self) -> str | None:
        return self.labels.get(LABEL_WORKFLOW)

    @property
    def version_id(self) -> str | None:
        return self.labels.get(LABEL_VERSION)


class WorkerBackend(Protocol):
    """What the CI and the CLI need from a worker backend; raises ``WorkersError`` or ``InvalidInput``."""

    async def find(self, workflow_name: str, version_id: str) -> list[WorkerSet]:
        """The deployments labelled with exactly this workflow name and version id, sorted by name."""
        ...

    async def delete(self, deployment: WorkerSet) -> None:
        """Stop and remove a deployment ``find`` returned; one that is already gone counts as deleted.

        When ``deployment.uid`` is set and the backend now holds another incarnation under that name (deleted
        and created again since), nothing is deleted: the caller's decision was about the old one."""
        ...

    async def list_versions(self, workflow_name: str) -> list[str]:
        """The distinct version ids that have a deployment of this workflow, sorted."""
        ...

    async def close(self) -> None:
        """Release clients; never stops workers (they outlive the CLI that started them)."""
        ...


def check_names(workflow_name: str, version_id: str | None = None) -> None:
    """Reject bad names before any I/O, so a typo can never select (or delete) something else."""
    try:
        check_name(workflow_name, "workflow name")
        if version_id is not None:
            check_name(version_id, "version id")
    except ValueError as e:
        raise InvalidInput(str(e)) from e


def worker_labels(workflow_name: str, version_id: str) -> dict[str, str]:
    """The two labels that identify a version's workers."""
    return {LABEL_WORKFLOW: workflow_name, LABEL_VERSION: version_id}


def label_selector(workflow_name: str, version_id: str | None = None) -> str:
    """A Kubernetes label selector (``,`` means AND) for a workflow's or one version's workers."""
    selector = f"{LABEL_WORKFLOW}={workflow_name}"
    return selector if version_id is None else f"{selector},{LABEL_VERSION}={version_id}"


def labels_match(labels: Mapping[str, str], workflow_name: str, version_id: str | None = None) -> bool:
    """Exact match on both labels (``version_id=None``: any version); a missing label never matches."""
    if labels.get(LABEL_WORKFLOW) != workflow_name or LABEL_VERSION not in labels:
        return False
    return version_id is None or labels[LABEL_VERSION] == version_id
