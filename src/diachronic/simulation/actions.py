"""The explorer's language: a story is a starting world plus a list of actions, each plain data.

Actions are what can happen around a CI: people deploy, re-send events, steer the CI, edit flags (also between the
automation's read and its write), workflows start and end, the flag store, Kubernetes and Temporal fail, time
passes. Being data, a story can be generated from a seed, replayed, shrunk, and printed as Python that pastes into
the scenario catalog (``python_literal``). How actions act is the executor's business (``diachronic.simulation.
explorer``), so one story means the same thing to every executor.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from diachronic.ci.contracts import CanaryOptions, HealthRule

__all__ = [
    "CANARY_SOAK_S",
    "FAILURES",
    "Action",
    "Archive",
    "Break",
    "Control",
    "Deploy",
    "DeployKind",
    "DisableGeneral",
    "Fail",
    "Failure",
    "FinishWorkflows",
    "GateVerdict",
    "HealthRule",
    "RaceWrite",
    "Resend",
    "Rollback",
    "SetPercent",
    "Start",
    "StartWorkflows",
    "Story",
    "Wait",
    "Workers",
    "WorkersDown",
    "WorkersUp",
    "python_literal",
]

DeployKind = Literal["migratory", "non-migratory", "dark"]
Workers = Literal["up", "late", "never"]
"""When a deployed version's workers poll its queue: with the deploy event, later (a ``WorkersUp``), or never."""
GateVerdict = Literal["pass", "fail"]
"""How a deploy's gate workflow (``deploy --gate``) ends."""
CANARY_SOAK_S = 300.0
"""The soak of a story's canary cohort."""


@dataclass(frozen=True)
class Start:
    """The world before the story: versions deployed earlier (the last one live at 100 %), workflows running on it
    (``finishing`` of them end on their own after a few looks at their queue), and continue-as-new thresholds in
    history events (``None``: the defaults) for the CI and for its children."""

    live: tuple[str, ...] = ("v1",)
    running: int = 0
    finishing: int = 0
    ci_history: int | None = None
    child_history: int | None = None


@dataclass(frozen=True)
class Deploy:
    """A version's deploy event arrives (``diachronic deploy``): a new version, or an older one again (a roll-back by
    redeploy). Its workers are up with it, come up later (``workers="late"``: a ``WorkersUp``) or never; ``gate``:
    ``deploy --gate`` with a gate workflow that passes or fails (before every step with ``gate_every_step``)."""

    version: str
    kind: DeployKind = "migratory"
    steps: str = "25@60s,50@60s,75@60s,100@60s"
    poll_s: float = 30.0
    batch_size: int | None = None
    canary: int | None = None  # ``--migrate-canary N``: the migration moves N first, soaks ``CANARY_SOAK_S``
    workers: Workers = "up"
    gate: GateVerdict | None = None
    gate_every_step: bool = False

    @property
    def canary_options(self) -> CanaryOptions | None:
        return None if self.canary is None else CanaryOptions(size=self.canary, soak_s=CANARY_SOAK_S)


@dataclass(frozen=True)
class WorkersUp:
    """The version's workers come up: a worker polls its task queue (a no-op while they run)."""

    version: str


@dataclass(frozen=True)
class WorkersDown:
    """The version's workers go away (scaled to zero, crashed): nobody polls its task queue any more."""

    version: str


@dataclass(frozen=True)
class Break:
    """The version's code turns out broken: Temporal's evidence about its workflows fires the health ``rule`` (see
    ``diachronic.ci.planner.health``)."""

    version: str
    rule: HealthRule = HealthRule.TASK_PROBLEMS


@dataclass(frozen=True)
class Rollback:
    """A person runs ``diachronic rollback``: at once, or down ``steps`` (``--steps``)."""

    steps: str | None = None


@dataclass(frozen=True)
class Resend:
    """The last deploy event of ``version`` arrives once more through the original's wire signal, unchanged (its
    old ``eventTime``): a duplicate while that deployment is current or queued, a stale event afterwards."""

    version: str


@dataclass(frozen=True)
class Control:
    """A person steers the CI: continue, cancel, pause, resume, promote or abort; ``via_signal`` sends continue or
    cancel as the original's wire signals instead of our updates."""

    name: str
    via_signal: bool = False


@dataclass(frozen=True)
class SetPercent:
    """A person sets the general percentage of the version's newest flag (the Unleash UI)."""

    version: str
    percent: int


@dataclass(frozen=True)
class RaceWrite:
    """A person sets the general percentage of the version's newest flag right before the automation's next write
    to it lands: after the automation read the flag, before it writes."""

    version: str
    percent: int


@dataclass(frozen=True)
class DisableGeneral:
    """A person disables (or, with ``delete``, deletes) the general strategy of the version's newest flag."""

    version: str
    delete: bool = False


@dataclass(frozen=True)
class Archive:
    """A person archives the version's newest flag."""

    version: str


@dataclass(frozen=True)
class StartWorkflows:
    """``count`` workflows start: where the flags route each of them (as the signaler does), or on ``version``'s
    task queue when given (if its workers run). ``lifetime``: looks at their queue before they end on their own."""

    count: int
    version: str | None = None
    lifetime: int | None = None


@dataclass(frozen=True)
class FinishWorkflows:
    """Workflows running on the version's task queue end (``count`` of them, or all)."""

    version: str
    count: int | None = None


Failure = Literal["flag-store-down", "flag-store-forbidden", "kubernetes-403", "kubernetes-503", "temporal-busy"]

FLAG_READS = ("list_version_flags", "read_version_flag")
FLAG_WRITES = ("apply_version_flag", "set_traffic_percent", "archive_version_flag")

FAILURES: dict[Failure, tuple[str, bool, tuple[str, ...]]] = {
    "flag-store-down": ("FlagStoreError", True, (*FLAG_READS, *FLAG_WRITES)),
    "flag-store-forbidden": ("FlagStoreError", False, (*FLAG_READS, *FLAG_WRITES, "migrate_sweep")),
    "kubernetes-403": ("WorkersError", False, ("find_workers", "delete_workers")),
    "kubernetes-503": ("WorkersError", True, ("find_workers", "delete_workers")),
    "temporal-busy": ("TemporalError", True, ("count_running", "migrate_sweep")),
}
"""Incidents: the error type they raise, whether a retry can help, and the activities that meet them."""


@dataclass(frozen=True)
class Fail:
    """The next ``count`` calls of ``activity`` meet ``failure`` (a burst; one call is enough for a permanent one)."""

    failure: Failure
    activity: str
    count: int = 1


@dataclass(frozen=True)
class Wait:
    """Virtual time passes."""

    seconds: float


Action = (
    Deploy
    | WorkersUp
    | WorkersDown
    | Break
    | Rollback
    | Resend
    | Control
    | SetPercent
    | RaceWrite
    | DisableGeneral
    | Archive
    | StartWorkflows
    | FinishWorkflows
    | Fail
    | Wait
)


@dataclass(frozen=True)
class Story:
    """A starting world and what happens in it, in order."""

    start: Start
    actions: tuple[Action, ...]

    def __len__(self) -> int:
        return len(self.actions)


def python_literal(value: Any) -> str:
    """``value`` as Python source in the catalog's style: dataclasses with only their non-default fields (the first
    one positional), strings in double quotes, tuples and lists as such."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts: list[str] = []
        for index, field in enumerate(dataclasses.fields(value)):
            item = getattr(value, field.name)
            if field.default is not dataclasses.MISSING and item == field.default:
                continue
            text = python_literal(item)
            parts.append(text if index == 0 and not parts else f"{field.name}={text}")
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        items = [python_literal(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, list):
        return f"[{', '.join(python_literal(v) for v in value)}]"
    return repr(value)
