"""The wire side of the migrate protocol: names, the continuation envelope, the snapshot, request parsing.

Everything here is pure (no Temporal calls), so it is safe inside the workflow sandbox and easy to test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from diachronic.contracts import MIGRATE_SIGNAL, State

__all__ = [
    "CONTINUATION_KEY",
    "MIGRATE_SIGNAL",
    "SNAPSHOT_QUERY",
    "Continuation",
    "MigrationEnvelope",
    "Snapshot",
    "as_utc",
    "parse_migrate_args",
]

SNAPSHOT_QUERY = "diachronic.v1.snapshot"
"""Query answering with a :class:`Snapshot` of a migratable workflow."""

CONTINUATION_KEY = "diachronic.v1.continuation"
"""The single key of the continue-as-new argument that carries state to the next run."""

_T = TypeVar("_T")


class _Wire(State):
    """The project's wire format (``contracts.State``); unknown fields ignored so newer senders stay readable."""

    model_config = ConfigDict(extra="ignore")


class Continuation(_Wire):
    """What one run hands to the next: the author's state as JSON, its schema version and the pending timers.

    A transform receives this object; it may read ``state`` (raw JSON, use :meth:`state_as`) and may edit
    ``timers`` (the map restored in the new run).
    """

    state: Any
    state_version: str | None = None
    timers: dict[str, datetime] = Field(default_factory=dict)
    from_task_queue: str | None = None
    to_task_queue: str | None = None
    from_run_id: str | None = None
    migrated_at: datetime | None = None

    def state_as(self, state_type: type[_T]) -> _T:
        """The carried state validated as ``state_type`` (a pydantic model, dataclass, TypedDict...)."""
        return TypeAdapter(state_type).validate_python(self.state)


class MigrationEnvelope(BaseModel):
    """The continue-as-new argument: ``{"diachronic.v1.continuation": {...}}``.

    Extra keys are forbidden so that, in a run signature like ``arg: MigrationEnvelope | StartInput``,
    pydantic never mistakes an ordinary start input for an envelope (or the reverse).
    """

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True, extra="forbid")

    continuation: Continuation = Field(alias=CONTINUATION_KEY)

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON, readable by any data converter (not only the pydantic one)."""
        return self.model_dump(mode="json", by_alias=True)


class Snapshot(_Wire):
    """Answer of the ``diachronic.v1.snapshot`` query: where the workflow is and what it would carry."""

    workflow_id: str
    run_id: str
    task_queue: str
    state_version: str | None
    state: Any
    timers: dict[str, datetime]
    pending_task_queue: str | None
    """Target of a migration that was requested but has not happened yet (e.g. inside ``no_migrate``)."""
    in_no_migrate: bool
    migrated_from: str | None
    """Task queue of the previous run, when this run was started by a migration or a checkpoint."""
    migrated_at: datetime | None
    accepts: list[str] = Field(default_factory=list)
    """State versions this code restores: its own and those its transform declares (``init_state(accepts=...)``)."""


def as_utc(moment: datetime) -> datetime:
    """Deadlines are absolute instants; a naive datetime is taken as UTC (``workflow.now()`` is UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_migrate_args(args: Sequence[Any]) -> tuple[str | None, str | None]:
    """``(task_queue, None)`` for a usable migrate signal, ``(None, reason)`` otherwise.

    The signal handler takes raw arguments so that a malformed payload reaches this function instead of
    failing deserialization (which would drop it with a stack trace) or the handler (which would fail the
    workflow task over and over).
    """
    if len(args) != 1:
        return None, f"expected one argument {{'taskQueue': ...}}, got {len(args)}"
    payload = args[0]
    if not isinstance(payload, Mapping):
        return None, f"argument must be an object {{'taskQueue': ...}}, got {type(payload).__name__}"
    if "taskQueue" not in payload:
        return None, "argument has no 'taskQueue'"
    queue = payload["taskQueue"]
    if not isinstance(queue, str):
        return None, f"'taskQueue' must be a string, got {type(queue).__name__}"
    if not queue.strip():
        return None, "'taskQueue' is empty"
    return queue, None
