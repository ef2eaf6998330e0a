"""The errors diachronic raises, one small tree with stable names.

    DiachronicError            every error of ours; ``name`` is stable, ``retryable`` says whether a retry can help
    ├── InvalidInput           a caller's mistake (bad name, payload, control in the wrong phase); never retryable
    ├── NotFound               the thing asked for does not exist
    ├── ConfigError            settings missing or inconsistent
    └── BackendError           an external system (flag store, worker deployments, Temporal) failed
        ├── FlagStoreError
        └── DeploymentsError

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


class NotFound(DiachronicError):
    name = "NotFound"


class ConfigError(DiachronicError):
    name = "ConfigError"


class BackendError(DiachronicError):
    name = "BackendError"
    retryable = True


class FlagStoreError(BackendError):
    name = "FlagStoreError"


class DeploymentsError(BackendError):
    name = "DeploymentsError"
