"""The migrate SDK: what a Python workflow needs to obey ``diachronic.v1.migrate`` (see docs/migrate.md).

Workflow side: subclass :class:`MigratableWorkflow`, keep state in ``self.state``, run your loop through
``run_migratable``, guard non-interruptible work with ``async with self.no_migrate()`` and wait with
``sleep_until``/``timer`` (absolute deadlines, carried across the move).
Client side: :func:`signal_migrate`, :func:`locate`, :func:`snapshot`, :func:`wait_for_task_queue`.
"""

from __future__ import annotations

from diachronic.migrate._protocol import (
    CONTINUATION_KEY,
    MIGRATE_SIGNAL,
    SNAPSHOT_QUERY,
    Continuation,
    MigrationEnvelope,
    Snapshot,
    parse_migrate_args,
)
from diachronic.migrate._workflow import STATE_REJECTED_ERROR, MigratableWorkflow
from diachronic.migrate.client import (
    WorkflowLocation,
    locate,
    signal_migrate,
    snapshot,
    wait_for_task_queue,
)

__all__ = [
    "CONTINUATION_KEY",
    "MIGRATE_SIGNAL",
    "SNAPSHOT_QUERY",
    "STATE_REJECTED_ERROR",
    "Continuation",
    "MigratableWorkflow",
    "MigrationEnvelope",
    "Snapshot",
    "WorkflowLocation",
    "locate",
    "parse_migrate_args",
    "signal_migrate",
    "snapshot",
    "wait_for_task_queue",
]
