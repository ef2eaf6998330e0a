"""One deployment, from its start to its typed end.

- ``plan_start``: at the start, over the observed flags: refuse (another environment, a task queue another
  workflow's version already has), skip (the version already is the newest live version: a duplicate, unless a
  human asked to redeploy it), or deploy, initial (no previous version) or as a rollout from the previous version.
- ``plan_children``: while the rollout and migration children run, whichever ends first decides: a failure stops the
  other and fails the deployment; a human's cancel or abort stops both; a rollout stopped by a human edit lets the
  migration follow the flag and ends the deployment as ``stopped``.
- ``plan_route_back``: an abort's write (the new version's general percentage to 0, on the value read).
- ``run_failure``: failures are counted across continue-as-new; a run with any fails.

The CI workflow gathers the observations and executes the plans; it takes no decision of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from diachronic.ci.contracts import Actor, Control, DeploymentEnd, Phase
from diachronic.ci.planner.rollout import TrafficObservation
from diachronic.contracts import DeployEvent, VersionInfo
from diachronic.flags import VersionFlag
from diachronic.versions import previous_version

__all__ = [
    "MAX_FAILURES_KEPT",
    "ChildState",
    "ChildView",
    "ChildrenAction",
    "ChildrenPlan",
    "ChildrenSnapshot",
    "DeploymentKind",
    "DeploymentSnapshot",
    "DeploymentStart",
    "Refusal",
    "RouteBack",
    "StartVerdict",
    "plan_children",
    "plan_route_back",
    "plan_start",
    "run_failure",
]

MAX_FAILURES_KEPT = 5  # the reasons a failed run lists; the count covers all


class DeploymentKind(StrEnum):
    INITIAL = "initial"  # no previous version: route 100 % and finish
    ROLLOUT = "rollout"  # a previous version exists: roll out, then migrate or clean up


class StartVerdict(StrEnum):
    INITIAL = "initial"
    ROLLOUT = "rollout"
    DUPLICATE = "duplicate"  # the version already is the newest live version
    REFUSE = "refuse"


class Refusal(StrEnum):
    """Why a deployment is refused before anything changes (the typed reason of its failure)."""

    ENVIRONMENT = "EnvironmentMismatch"
    TASK_QUEUE_TAKEN = "TaskQueueTaken"


@dataclass(frozen=True)
class DeploymentSnapshot:
    event: DeployEvent
    flags: tuple[VersionFlag, ...]  # the workflow's live flags, newest first
    environment: str  # the deployment environment this CI serves
    twins: tuple[VersionInfo, ...] = ()  # other workflows' versions on this version's task queue
    redeploy: bool = False  # a human asked to deploy the version again, even if it is the newest live one


@dataclass(frozen=True)
class DeploymentStart:
    verdict: StartVerdict
    previous: VersionInfo | None = None  # ROLLOUT: the version traffic and workflows move away from
    refusal: Refusal | None = None
    detail: str | None = None

    @property
    def branch(self) -> StartVerdict:
        return self.verdict

    @property
    def kind(self) -> DeploymentKind | None:
        return {StartVerdict.INITIAL: DeploymentKind.INITIAL, StartVerdict.ROLLOUT: DeploymentKind.ROLLOUT}.get(
            self.verdict
        )


def plan_start(snapshot: DeploymentSnapshot) -> DeploymentStart:
    """Refuse, skip as a duplicate, or deploy (initial or rollout); see the module's docstring."""
    event = snapshot.event
    if event.environment != snapshot.environment:
        return DeploymentStart(
            StartVerdict.REFUSE,
            refusal=Refusal.ENVIRONMENT,
            detail=f"the deploy event is for environment {event.environment!r}, this CI serves "
            f"{snapshot.environment!r} (DIACHRONIC_ENVIRONMENT): nothing was changed",
        )
    if snapshot.twins:
        twin = snapshot.twins[0]
        return DeploymentStart(
            StartVerdict.REFUSE,
            refusal=Refusal.TASK_QUEUE_TAKEN,
            detail=f"task queue {twin.task_queue} already belongs to workflow {twin.workflow_name!r} version "
            f"{twin.version_id!r}; two versions on one queue would run each other's workflows: choose another "
            "version id",
        )
    live = [f for f in snapshot.flags if not f.archived]
    if live and live[0].info.version_id == event.version_id and not snapshot.redeploy:
        return DeploymentStart(
            StartVerdict.DUPLICATE,
            detail=f"{event.version_id} already is the newest live version ({live[0].info.flag_name}): nothing "
            "to deploy (a roll-back is a deploy of another version; `deploy --redeploy` takes this one through a "
            "deployment again)",
        )
    previous = previous_version(live, event.version_id)
    if previous is None:
        return DeploymentStart(StartVerdict.INITIAL)
    return DeploymentStart(StartVerdict.ROLLOUT, previous=previous)


# --------------------------------------------------------------------------------------------------- children


class ChildState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # the rollout stepped aside: a human edited the flag
    HANDED_OFF = "handed_off"  # the migration drained the old queue and left retiring to a cleanup workflow
    FAILED = "failed"


@dataclass(frozen=True)
class ChildView:
    state: ChildState
    reason: str | None = None  # STOPPED, FAILED: the typed reason
    detail: str | None = None


RUNNING = ChildView(ChildState.RUNNING)


@dataclass(frozen=True)
class ChildrenSnapshot:
    rollout: ChildView | None  # None: not started yet (preparing, or a dark deploy awaiting continue)
    migration: ChildView | None  # None: none runs (non-migratory, or not started yet)
    stop: Control | None = None  # a human's cancel or abort
    note: str | None = None  # the reason given with it


class ChildrenAction(StrEnum):
    WAIT = "wait"  # until a child ends or a human stops the deployment
    END = "end"


@dataclass(frozen=True)
class ChildrenPlan:
    action: ChildrenAction
    phase: Phase  # WAIT: the phase meanwhile; END: the final phase
    stop_children: bool = False
    route_back: bool = False  # abort: new starts back to the previous version
    start_cleanup: bool = False  # the previous version is retired by a cleanup workflow of its own
    end: DeploymentEnd | None = None

    @property
    def branch(self) -> Phase:
        return self.phase


def plan_children(snapshot: ChildrenSnapshot) -> ChildrenPlan:
    """Whichever ends first decides; see the module's docstring."""
    rollout, migration = snapshot.rollout, snapshot.migration
    running = any(child is not None and child.state is ChildState.RUNNING for child in (rollout, migration))
    if snapshot.stop is Control.CANCEL:
        end = DeploymentEnd(detail="automation stopped, flags left as they are", by=Actor.HUMAN)
        return _end(Phase.CANCELLED, end.model_copy(update={"note": snapshot.note}), stop_children=running)
    if snapshot.stop is Control.ABORT:
        end = DeploymentEnd(detail="new starts routed back to the previous version, migration stopped", by=Actor.HUMAN)
        return _end(Phase.ABORTED, end.model_copy(update={"note": snapshot.note}), stop_children=running)
    for child in (rollout, migration):
        if child is not None and child.state is ChildState.FAILED:
            return _end(Phase.FAILED, DeploymentEnd(reason=child.reason, detail=child.detail), stop_children=running)
    if rollout is None or rollout.state is ChildState.RUNNING:
        return ChildrenPlan(ChildrenAction.WAIT, Phase.ROLLING_OUT)
    if migration is not None and migration.state is ChildState.RUNNING:
        return ChildrenPlan(ChildrenAction.WAIT, Phase.MIGRATING)
    cleanup = migration is None or migration.state is ChildState.HANDED_OFF
    if rollout.state is ChildState.STOPPED:
        return _end(Phase.STOPPED, DeploymentEnd(reason=rollout.reason, detail=rollout.detail), start_cleanup=cleanup)
    return _end(Phase.COMPLETED, DeploymentEnd(), start_cleanup=cleanup)


def _end(phase: Phase, end: DeploymentEnd, *, stop_children: bool = False, start_cleanup: bool = False) -> ChildrenPlan:
    return ChildrenPlan(
        ChildrenAction.END,
        phase,
        stop_children=stop_children,
        route_back=phase is Phase.ABORTED,
        start_cleanup=start_cleanup,
        end=end,
    )


# --------------------------------------------------------------------------------------------------- abort


@dataclass(frozen=True)
class RouteBack:
    """Write ``percent`` to the new version's general percentage, only if it still holds ``expected``."""

    percent: int
    expected: int


def plan_route_back(observed: TrafficObservation) -> RouteBack | None:
    """An abort sends new starts back to the previous version: the new flag's general percentage to 0, on the value
    read. Nothing to write when it is 0 already, or when a human deleted, disabled or archived it (they win)."""
    if not observed.flag_found or not observed.strategy_found or observed.strategy_disabled:
        return None
    if observed.percent is None or observed.percent == 0:
        return None
    return RouteBack(percent=0, expected=observed.percent)


# --------------------------------------------------------------------------------------------------- the run


def run_failure(failed: int, reasons: Sequence[str]) -> str | None:
    """Why the CI run fails (None: it completes): any failed deployment fails it, across continue-as-new."""
    if failed == 0:
        return None
    more = f" (and {failed - len(reasons)} more)" if failed > len(reasons) else ""
    return f"{failed} deployment(s) failed: " + "; ".join(reasons) + more
