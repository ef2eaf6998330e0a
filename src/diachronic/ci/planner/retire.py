"""The retire rule: may an old version's flag be archived and its workers deleted, now?

Migration and cleanup observe, right before retiring, the workflow's live flags, how many workflows run on the old
task queue, which versions the CI is deploying and who polls the newest version's queue (``successor_queue``),
then execute the plan: archive the flag first (no traffic can reach a version whose flag is archived), then delete
the workers.

    plan = plan_retire(RetireSnapshot(old=v1, flags=live_flags, running_on_old_queue=0, deploying=("v3",)))
    plan.blocker   -> hold, look again later (RUNNING, ROUTED, NEWEST, DEPLOYING, NO_POLLER)
    plan.archive_flag / plan.delete_workers / plan.kept_workers -> what to do

The flag of a version is retirable once it is not the newest and routes no traffic. Its workers are deletable
only if, on top, nothing runs on its task queue, no other live flag carries the same task queue (a redeploy made the
version live again: the workers stay, they serve that flag), no deployment of the version is queued or in
progress (it would route traffic to workers that are gone), and a worker polls the newest version's task queue
(readiness, docs/gates.md: the old workers are never retired while the new queue has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from diachronic.contracts import VersionInfo
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import flag_reach

__all__ = [
    "RetireAction",
    "RetireBlocker",
    "RetirePlan",
    "RetireSnapshot",
    "migration_done",
    "plan_retire",
    "successor_queue",
]

LIVE_AGAIN = "another live flag carries its task queue: the version was deployed again"


class RetireBlocker(StrEnum):
    RUNNING = "workflows still run on the old task queue"
    ROUTED = "the old version still receives routed traffic"
    NEWEST = "the old version is the newest version"
    DEPLOYING = "a deployment of the old version is queued or in progress"
    NO_POLLER = "no worker polls the new version's task queue: the old version's workers stay until one does"
    DELAYED = "the retire delay runs: the old workers stay until it ends"


class RetireAction(StrEnum):
    RETIRE = "retire"  # archive the flag (unless it is already), delete the workers
    KEEP_WORKERS = "keep_workers"  # archive the flag (unless it is already), keep the workers: live again


@dataclass(frozen=True)
class RetireSnapshot:
    old: VersionInfo  # the version to retire: its flag (by name) and its task queue
    flags: tuple[VersionFlag, ...]  # the workflow's version flags, newest first (archived ones are ignored)
    running_on_old_queue: int
    deploying: tuple[str, ...] = ()  # versions the CI's queue holds or deploys now
    new_queue_pollers: int | None = None  # workers polling the newest live version's queue (None: not looked yet)


@dataclass(frozen=True)
class RetirePlan:
    blocker: RetireBlocker | None = None  # not None: do nothing now, look again later
    archive_flag: bool = False
    delete_workers: bool = False
    kept_workers: str | None = None  # why the workers stay although the version retires

    @property
    def branch(self) -> RetireBlocker | RetireAction:
        if self.blocker is not None:
            return self.blocker
        return RetireAction.RETIRE if self.delete_workers else RetireAction.KEEP_WORKERS


def plan_retire(snapshot: RetireSnapshot) -> RetirePlan:
    """What retiring ``snapshot.old`` may do now; see the module's docstring."""
    old = snapshot.old
    live = [f for f in snapshot.flags if not f.archived]
    flag_live = any(f.info.flag_name == old.flag_name for f in live)
    live_again = any(f.info.task_queue == old.task_queue and f.info.flag_name != old.flag_name for f in live)
    if snapshot.running_on_old_queue > 0 and not live_again:  # live again: the workers stay, running or not
        return RetirePlan(RetireBlocker.RUNNING)
    if flag_live:
        if live[0].info.flag_name == old.flag_name:
            return RetirePlan(RetireBlocker.NEWEST)
        if _routed(live, old):
            return RetirePlan(RetireBlocker.ROUTED)
    if live_again:
        return RetirePlan(archive_flag=flag_live, kept_workers=LIVE_AGAIN)
    if old.version_id in snapshot.deploying:
        return RetirePlan(RetireBlocker.DEPLOYING)
    if snapshot.new_queue_pollers == 0:
        return RetirePlan(RetireBlocker.NO_POLLER)
    return RetirePlan(archive_flag=flag_live, delete_workers=True)


def successor_queue(flags: Sequence[VersionFlag]) -> str | None:
    """The task queue of the newest live version: the one the old version's work goes to (its pollers are checked
    before the old workers are deleted)."""
    live = [f for f in flags if not f.archived]
    return live[0].info.task_queue if live else None


def migration_done(snapshot: RetireSnapshot, plan: RetirePlan) -> bool:
    """Nothing runs on the old task queue and no new start is routed there any more: the previous version's
    workflows are all gone (moved, or finished), for good (the ``migration_done`` notification)."""
    return snapshot.running_on_old_queue == 0 and plan.blocker not in (RetireBlocker.ROUTED, RetireBlocker.NEWEST)


def _routed(live_newest_first: list[VersionFlag], old: VersionInfo) -> bool:
    """The old flag receives general traffic unless a newer flag is on for every general workflow id (newest wins):
    judged by Unleash's rules (``flag_reach``), so a general strategy at 100 % that a person disabled shields
    nothing; isTest traffic goes to the newest flag, which the old one is not."""
    for flag in live_newest_first:
        if flag.info.flag_name == old.flag_name:
            return True
        if flag_reach(flag, is_test=False)[1]:
            return False
    return True
