"""Roll-back: new starts go back to the previous live version, the migration stops, moved workflows stay.

``diachronic rollback WORKFLOW`` acts on the deployment in progress: the new version's general percentage goes to 0
in one write (the temporal-worker-controller's AllAtOnce roll-back), or step by step with ``--steps`` (the schedule
is the previous version's share, rising to 100: ``50@30s,100@30s`` leaves the new version 50 % then 0 %); the
migration stops at once. A deploy of a version that was live within the last hour (``RECENTLY_LIVE_S``) is a
roll-back too (``plan_redeploy``): when it starts, it routes 100 % at once unless it gives its own ``--steps``, and
the workflows stay where they are (a redeploy queues behind the deployment in progress like any other: to stop
that one at once, ``rollback`` it).

Workflows already moved stay on the new version (its workers are kept while they run). They move back only with
``--migrate-back``, and only when the old version's code declares it restores the state the new version's
workflows carry (the migrate SDK's ``accepts``: the transform in reverse), as their ``diachronic.v1.snapshot``
answers say (``migrate_back_verdict``). Without that declaration a migrate-back would hand the old code a state it
cannot read: the workflows would fail, so they stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from diachronic.ci.contracts import FINAL_PHASES, Deployment, MigrateBackEvidence, Phase
from diachronic.ci.planner.rollout import INITIAL_STEPS
from diachronic.ci.planner.schedule import MAX_PERCENT
from diachronic.contracts import RolloutStep

__all__ = [
    "RECENTLY_LIVE_S",
    "ROLLBACK_PHASES",
    "ROLLED_BACK",
    "MigrateBack",
    "RedeployKind",
    "RedeployPlan",
    "last_live",
    "migrate_back_verdict",
    "plan_redeploy",
    "rollback_refusal",
    "rollback_steps",
]

RECENTLY_LIVE_S = 3600.0
ROLLED_BACK = "RolledBack"
"""The typed reason of a deployment ended by a roll-back (or a redeploy of a recently live version)."""
ROLLBACK_PHASES = (Phase.AWAITING_CONTINUE, Phase.ROLLING_OUT, Phase.MIGRATING)
AT_ONCE = INITIAL_STEPS  # one step: 100 % at once (an initial deployment's schedule)


def rollback_refusal(current: Deployment | None, history: Sequence[Deployment]) -> str | None:
    """Why there is nothing to roll back (None: the deployment in progress can be)."""
    if current is None or current.phase in FINAL_PHASES:
        last = next((d for d in reversed(history) if d.from_version is not None), None)
        hint = (
            f": to go back to {last.from_version.version_id}, deploy it again (a version live within the last hour "
            "goes back at once)"
            if last is not None and last.from_version is not None
            else ""
        )
        return f"rollback: nothing is being deployed{hint}"
    if current.from_version is None:
        return "rollback: an initial deployment has no previous version"
    if current.phase not in ROLLBACK_PHASES:
        wanted = " or ".join(p.value for p in ROLLBACK_PHASES)
        return f"rollback: the deployment of {current.request.event.version_id} is {current.phase.value}, not {wanted}"
    return None


def rollback_steps(steps: Sequence[RolloutStep] | None) -> list[RolloutStep]:
    """The new version's percentages on the way back: 0 at once, or ``100 - share`` for each step of ``steps``."""
    return [RolloutStep(percent=MAX_PERCENT - step.percent, wait_s=step.wait_s) for step in (steps or AT_ONCE)]


# --------------------------------------------------------------------------------------------------- redeploy


def last_live(version_id: str, deployments: Iterable[Deployment], now: datetime) -> datetime | None:
    """When ``version_id`` last received traffic, by the CI's records (``now``: it still does; None: never seen).

    The newest deployment that names the version decides: one that moved traffic away from it and completed left it
    live until it ended; one to it that was aborted sent the traffic back when it ended; any other (in progress,
    completed to it, or cancelled, stopped or failed half-way) leaves it receiving traffic now."""
    last: datetime | None = None
    for deployment in sorted(deployments, key=lambda d: d.started_at or now):
        moved_to = deployment.to_version is not None and deployment.to_version.version_id == version_id
        moved_from = deployment.from_version is not None and deployment.from_version.version_id == version_id
        if not (moved_to or moved_from):
            continue
        gone = Phase.ABORTED if moved_to else Phase.COMPLETED
        last = (deployment.finished_at or now) if deployment.phase is gone else now
    return last


class RedeployKind(StrEnum):
    DEPLOY = "deploy"  # an ordinary deployment
    ROLLBACK = "rollback"  # a version live within the last hour: a roll-back by redeploy


@dataclass(frozen=True)
class RedeployPlan:
    rollback: bool  # a recently live version: a roll-back by redeploy
    steps: tuple[RolloutStep, ...] | None = None  # the schedule the redeploy routes with (None: its own)

    @property
    def branch(self) -> RedeployKind:
        return RedeployKind.ROLLBACK if self.rollback else RedeployKind.DEPLOY


def plan_redeploy(
    version_id: str, *, history: Sequence[Deployment], newest_live: str | None, now: datetime, steps_given: bool
) -> RedeployPlan:
    """Decided when the deployment starts: a version live within ``RECENTLY_LIVE_S`` that is not the newest live
    version is a roll-back by redeploy: 100 % at once unless it brings ``--steps``, and the workflows that moved to
    the version it replaces stay there (unless ``--migrate-back``: see ``migrate_back_verdict``)."""
    if version_id == newest_live:
        return RedeployPlan(rollback=False)
    last = last_live(version_id, history, now)
    if last is None or last < now - timedelta(seconds=RECENTLY_LIVE_S):
        return RedeployPlan(rollback=False)
    return RedeployPlan(rollback=True, steps=None if steps_given else AT_ONCE)


# --------------------------------------------------------------------------------------------------- migrate back


@dataclass(frozen=True)
class MigrateBack:
    allowed: bool
    detail: str


def migrate_back_verdict(evidence: MigrateBackEvidence, *, old_version: str, new_version: str) -> MigrateBack:
    """Move the workflows back only when the old code declares it restores every state the new code carries."""
    if evidence.running_on_new_queue == 0:
        return MigrateBack(False, f"no workflow runs on {new_version}: nothing to move back")
    if evidence.old_accepts is None:
        return MigrateBack(
            False,
            f"{old_version} could not be asked which states it accepts ({evidence.detail or 'no answer'}): "
            f"the workflows on {new_version} stay there",
        )
    if not evidence.new_state_versions:
        return MigrateBack(
            False,
            f"the workflows on {new_version} did not say which state they carry (stuck, or not migratable): "
            "they stay there",
        )
    missing = sorted(set(evidence.new_state_versions) - set(evidence.old_accepts))
    if missing:
        return MigrateBack(
            False,
            f"{old_version} does not declare it accepts state {', '.join(missing)} (it accepts "
            f"{', '.join(evidence.old_accepts) or 'nothing'}): the workflows on {new_version} stay there",
        )
    return MigrateBack(
        True, f"{old_version} accepts {', '.join(sorted(set(evidence.new_state_versions)))}: moving them back"
    )
