"""One deployment, from its start to its typed end.

- ``plan_start``: at the start, over the observed flags: refuse (another environment, a task queue another
  workflow's version already has), skip (the version already is the newest live version: a duplicate, unless a
  human asked to redeploy it), or deploy, initial (no previous version) or as a rollout from the previous version.
- ``plan_children``: while the rollout, migration and health children run, whichever ends first decides: a failure
  stops the others and fails the deployment; a human's cancel, abort or roll-back stops them; the health analysis's
  breach, or a failed gate before a rollout step, aborts (docs/gates.md); a rollout stopped by a human edit lets the
  migration follow the flag and ends the deployment as ``stopped``. The health workflow only watches: it is stopped
  whenever the deployment ends.
- ``plan_route_back``: an abort's write (the new version's general percentage down to 0, or to a roll-back step's
  percentage, on the value read).
- ``run_failure``: failures are counted across continue-as-new; a run with any fails.

The CI workflow gathers the observations and executes the plans; it takes no decision of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from diachronic.ci.contracts import Actor, Control, DeploymentEnd, Phase
from diachronic.ci.planner.rollback import ROLLED_BACK
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
    ABORTED = "aborted"  # a gate before a rollout step failed, or the health analysis found a breach


@dataclass(frozen=True)
class ChildView:
    state: ChildState
    reason: str | None = None  # STOPPED, FAILED, ABORTED: the typed reason
    detail: str | None = None


RUNNING = ChildView(ChildState.RUNNING)


@dataclass(frozen=True)
class ChildrenSnapshot:
    rollout: ChildView | None  # None: not started yet (preparing, or a dark deploy awaiting continue)
    migration: ChildView | None  # None: none runs (non-migratory, or not started yet)
    stop: Control | None = None  # a human's cancel, abort or roll-back
    note: str | None = None  # the reason given with it
    health: ChildView | None = None  # None: no health analysis (an initial deployment, or not started yet)


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
    rollout, migration, health = snapshot.rollout, snapshot.migration, snapshot.health
    children = (rollout, migration, health)
    running = any(child is not None and child.state is ChildState.RUNNING for child in children)
    if snapshot.stop is Control.CANCEL:
        end = DeploymentEnd(detail="automation stopped, flags left as they are", by=Actor.HUMAN)
        return _end(Phase.CANCELLED, end.model_copy(update={"note": snapshot.note}), stop_children=running)
    if snapshot.stop in (Control.ABORT, Control.ROLLBACK):
        end = DeploymentEnd(
            reason=ROLLED_BACK if snapshot.stop is Control.ROLLBACK else None,
            detail="new starts routed back to the previous version, migration stopped",
            by=Actor.HUMAN,
        )
        return _end(Phase.ABORTED, end.model_copy(update={"note": snapshot.note}), stop_children=running)
    for child in (health, rollout):
        if child is not None and child.state is ChildState.ABORTED:
            end = DeploymentEnd(reason=child.reason, detail=child.detail, by=Actor.GATES)
            return _end(Phase.ABORTED, end, stop_children=running)
    for child in children:
        if child is not None and child.state is ChildState.FAILED:
            return _end(Phase.FAILED, DeploymentEnd(reason=child.reason, detail=child.detail), stop_children=running)
    if rollout is None or rollout.state is ChildState.RUNNING:
        return ChildrenPlan(ChildrenAction.WAIT, Phase.ROLLING_OUT)
    if migration is not None and migration.state is ChildState.RUNNING:
        return ChildrenPlan(ChildrenAction.WAIT, Phase.MIGRATING)
    cleanup = migration is None or migration.state is ChildState.HANDED_OFF
    if rollout.state is ChildState.STOPPED:
        end = DeploymentEnd(reason=rollout.reason, detail=rollout.detail)
        return _end(Phase.STOPPED, end, start_cleanup=cleanup, stop_children=running)
    return _end(Phase.COMPLETED, DeploymentEnd(), start_cleanup=cleanup, stop_children=running)


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


def plan_route_back(observed: TrafficObservation, percent: int = 0) -> RouteBack | None:
    """An abort sends new starts back to the previous version: the new flag's general percentage down to ``percent``
    (0; a stepped roll-back's step), on the value read. Nothing to write when it is at or below that already, or
    when a human deleted, disabled or archived it (they win)."""
    if not observed.flag_found or not observed.strategy_found or observed.strategy_disabled:
        return None
    if observed.percent is None or observed.percent <= percent:
        return None
    return RouteBack(percent=percent, expected=observed.percent)


# --------------------------------------------------------------------------------------------------- the run


def run_failure(failed: int, reasons: Sequence[str]) -> str | None:
    """Why the CI run fails (None: it completes): any failed deployment fails it, across continue-as-new."""
    if failed == 0:
        return None
    more = f" (and {failed - len(reasons)} more)" if failed > len(reasons) else ""
    return f"{failed} deployment(s) failed: " + "; ".join(reasons) + more
