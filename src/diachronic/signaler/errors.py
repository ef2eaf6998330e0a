"""The signaler's own errors; the rest of what it raises comes from ``diachronic.errors`` (Temporal's errors are
translated by ``diachronic.temporal_errors``).

    DiachronicError
    ├── InvalidInput
    │   └── InvalidInstruction   the request body does not validate; names every bad field (HTTP 400)
    └── NotFound
        └── TaskQueueNotFound    an empty taskQueue and no enabled version of the workflow type (HTTP 404)

``diachronic.http.errors`` maps these to statuses; the in-process client raises the same ones.
"""

from __future__ import annotations

from diachronic.errors import InvalidInput, NotFound

__all__ = ["InvalidInstruction", "TaskQueueNotFound"]


class TaskQueueNotFound(NotFound):
    """The original's ``TaskQueueNotFound``: raised when no queue was found (its predicate was inverted, §11.22)."""

    name = "TaskQueueNotFound"


class InvalidInstruction(InvalidInput):
    """A request body that does not validate; ``problems`` names each bad field (``args.workflowId``...)."""

    name = "InvalidInstruction"

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems) or "invalid instruction")
        self.problems = problems
