"""The errors diachronic raises, one small tree with stable names.

    DiachronicError            every error of ours; ``name`` is stable, ``retryable`` says whether a retry can help
    ├── InvalidInput           a caller's mistake (bad name, payload, control in the wrong phase); never retryable
    │   ├── AlreadyStarted     a start for a workflow id that is already running
    │   └── UpdateRejected     a workflow refused an update (its validator's or handler's words)
    ├── NotFound               the thing asked for does not exist
    ├── ConfigError            settings missing or inconsistent
    ├── ConcurrentEdit         a conditional write found another value than the one it was based on (a human edit)
    └── BackendError           an external system (flag store, worker sets, Temporal) failed
        ├── FlagStoreError
        ├── WorkersError
        └── TimedOut           a workflow did not answer an update in time

Adapters translate their library's exceptions into these in one place; activities turn them into Temporal
``ApplicationError`` with ``type=name`` and ``non_retryable=not retryable`` (see ``diachronic.ci.activities``).
"""

from __future__ import annotations


class DiachronicError(Exception):
    """Base of every diachronic error."""

    name = "DiachronicError"
    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class InvalidInput(DiachronicError):
    name = "InvalidInput"


class AlreadyStarted(InvalidInput):
    name = "WorkflowExecutionAlreadyStarted"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class UpdateRejected(InvalidInput):
    name = "UpdateRejected"


class NotFound(DiachronicError):
    name = "NotFound"


class ConfigError(DiachronicError):
    name = "ConfigError"


class ConcurrentEdit(DiachronicError):
    """A compare-and-set write refused: the value changed since the writer read it. Never retried: the CI treats it
    as a human's edit, which always wins. ``found`` is what the store holds now (None: the value is gone)."""

    name = "ConcurrentEdit"

    def __init__(self, message: str, *, found: int | None = None) -> None:
        super().__init__(message)
        self.found = found


class BackendError(DiachronicError):
    name = "BackendError"
    retryable = True


class FlagStoreError(BackendError):
    name = "FlagStoreError"


class WorkersError(BackendError):
    name = "WorkersError"


class TimedOut(BackendError):
    name = "RequestResponseTimedOut"
