"""The referee: the safety invariants of docs/architecture.md, checked as the automation acts and after every step,
independently of the CI's own reasoning.

It is told what happens (``saw``, ``writing``, ``deleting``, ``archiving``: the automation's flag reads and writes,
worker deletions and flag archives, with the workflow that did them) and looks at the world and the CI between
steps (``after_step``, ``chain_ended``). Each broken invariant is recorded once as a ``Violation`` named by the
invariant (``INVARIANTS``), so that a shrunk counter-example can be told apart from another one.

Routing is judged exactly, not by sampling workflow ids: ``routes_traffic`` asks whether *some* workflow id reaches
a task queue, given that buckets of different flags are independent (each flag hashes with its own group id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from diachronic.contracts import VersionInfo
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import flag_reach, general_percent
from diachronic.versions import sort_newest_first

__all__ = ["INVARIANTS", "ChildView", "Referee", "Violation", "routes_to_flag", "routes_traffic"]

INVARIANTS = {
    "stranded": "every running workflow's task queue has workers",
    "live-workers-deleted": "no worker of a task queue is deleted while anything runs on it, a flag routes traffic "
    "to it, another unarchived flag carries it, or a queued deployment makes it live again",
    "signalled-twice": "each run is sent the migrate signal at most once",
    "blind-write": "no automated write replaces a value it did not read",
    "percent-down": "percentages go down only by a human or an abort (a human's, a roll-back, a health breach)",
    "routed-flag-archived": "no flag is archived while it routes traffic, nor the newest one",
    "failure-forgotten": "a failed deployment fails its CI run, across continue-as-new",
    "run-did-not-end": "every CI run ends (a story that hangs twice)",
    "child-outlived": "a deployment's children never outlive it, nor a failed sibling",
    "abort-not-routed-back": "a deployment ended aborted (by a human, a roll-back, a gate or the health analysis) "
    "leaves its new version no general traffic, unless a person changed that flag",
    "unready-traffic": "no flag routes to a version and no migrate signal is sent to it before a worker polled its "
    "task queue (readiness)",
}
"""The invariants the referee checks, by name."""

GRACE_S = 5.0
"""Virtual seconds after a child failed within which the CI must have asked its sibling to stop (or the sibling
ended): the CI reacts within a workflow task, not a poll. The stop request counts, not the sibling's close: the
test server delivers a cancellation only once time skipped to the sibling's next timer."""


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"


@dataclass(frozen=True)
class ChildView:
    """One child of the CI (rollout or migration) as Temporal describes it: when it started, when it closed (None
    while it runs), failed or not, and when the CI asked it to stop (its cancellation, read in the CI's history)."""

    workflow_id: str
    started_at: datetime
    closed_at: datetime | None = None
    failed: bool = False
    stop_requested_at: datetime | None = None


# ----------------------------------------------------------------------------------------------- routing


def _routed(flags: Iterable[VersionFlag], hit: Callable[[VersionFlag], bool]) -> bool:
    """Whether some workflow id (test traffic or not) is routed to a flag that ``hit`` picks: that flag is on for
    some id and no newer flag is on for every id."""
    newest_first = sort_newest_first(list(flags))
    for is_test in (False, True):
        for flag in newest_first:
            some, every = flag_reach(flag, is_test)
            if some and hit(flag):
                return True
            if every:
                break
    return False


def routes_traffic(flags: Iterable[VersionFlag], task_queue: str) -> bool:
    """Whether some workflow id is routed to ``task_queue`` by these flags."""
    return _routed(flags, lambda f: f.info.task_queue == task_queue)


def routes_to_flag(flags: Iterable[VersionFlag], flag_name: str) -> bool:
    """Whether some workflow id is routed to the flag named ``flag_name`` (not to another flag of its queue)."""
    return _routed(flags, lambda f: f.info.flag_name == flag_name)


# ----------------------------------------------------------------------------------------------- the referee


@dataclass
class Referee:
    """Records broken invariants; ``seen`` is what each workflow of the automation last read or wrote, per flag."""

    workflow_name: str
    violations: list[Violation] = field(default_factory=list)
    seen: dict[tuple[str, str], int | None] = field(default_factory=dict)
    aborted: set[str] = field(default_factory=set)  # flags an accepted abort routes back
    archived_by: dict[str, VersionInfo] = field(default_factory=dict)  # the flag each actor archived last
    _said: set[str] = field(default_factory=set)

    def violate(self, invariant: str, message: str) -> Violation | None:
        """Record a violation once (the same message again is the same finding); None if already recorded."""
        if invariant not in INVARIANTS:
            raise KeyError(f"no invariant {invariant!r}")
        if message in self._said:
            return None
        self._said.add(message)
        violation = Violation(invariant, message)
        self.violations.append(violation)
        return violation

    # ------------------------------------------------------------------------------------------- as it happens

    def saw(self, actor: str, flags: Iterable[VersionFlag]) -> None:
        """``actor`` (a workflow id) read these flags: it may write on the values it saw."""
        for flag in flags:
            self.seen[(actor, flag.info.flag_name)] = general_percent(flag)

    def abort_accepted(self, flag_name: str) -> None:
        """An accepted abort (a human's, a roll-back, or the automation's on evidence that the version is broken):
        routing this flag back is that decision, whatever it holds."""
        self.aborted.add(flag_name)

    def writing(self, actor: str, flag: VersionFlag, percent: int) -> None:
        """``actor`` is about to set the flag's general percentage (it is applied after this returns)."""
        name = flag.info.flag_name
        now = general_percent(flag)
        if not flag.archived and name not in self.aborted and percent != now:
            if (actor, name) not in self.seen:
                self.violate("blind-write", f"{actor} set {name} to {percent}% without reading it (it holds {now}%)")
            elif (last := self.seen[(actor, name)]) != now:
                self.violate(
                    "blind-write",
                    f"{actor} set {name} to {percent}% over {now}%, a value it never read (it last saw {last}%)",
                )
            if now is not None and percent < now:
                self.violate("percent-down", f"{actor} lowered {name} from {now}% to {percent}%")
        self.seen[(actor, name)] = percent

    def deleting(
        self,
        actor: str,
        flags: Sequence[VersionFlag],
        task_queue: str,
        *,
        running: int,
        queued: Iterable[str],
        version: str,
    ) -> list[str]:
        """The reasons the workers of ``task_queue`` must stay (each recorded); empty when deleting them is safe.

        The flag being retired is the one of this queue that ``actor`` just archived (archive first, then delete),
        else the oldest unarchived one (delete first); any other unarchived flag carrying the queue was made by a
        redeploy, which makes the queue live again."""
        live = [f for f in sort_newest_first(flags) if not f.archived]
        carrying = [f for f in live if f.info.task_queue == task_queue]
        just_archived = self.archived_by.get(actor)
        others = carrying if just_archived is not None and just_archived.task_queue == task_queue else carrying[:-1]
        reasons = []
        if running:
            reasons.append(f"{running} workflows still run on it")
        if routes_traffic(live, task_queue):
            reasons.append("the flags route traffic to it")
        if others:
            reasons.append(f"another unarchived flag carries it ({', '.join(f.info.flag_name for f in others)})")
        if live and live[0].info.task_queue == task_queue:
            reasons.append("it is the newest version's queue")
        if version in queued:
            reasons.append("a queued deployment makes it live again")
        for reason in reasons:
            self.violate("live-workers-deleted", f"deleting the workers of {task_queue}: {reason}")
        return reasons

    def archiving(self, actor: str, flags: Sequence[VersionFlag], flag: VersionFlag) -> None:
        """``actor`` archives a flag (``flags``: all of them, as they were before)."""
        if flag.archived:
            return
        self.archived_by[actor] = flag.info
        live = [f for f in flags if not f.archived]
        name = flag.info.flag_name
        if sort_newest_first(live)[:1] == [flag]:
            self.violate("routed-flag-archived", f"archived {name}, the newest version's flag")
        elif routes_to_flag(live, name):
            self.violate("routed-flag-archived", f"archived {name} while it routes traffic")

    # ------------------------------------------------------------------------------------------- between steps

    def after_step(
        self,
        *,
        running_queues: Mapping[str, int],
        worker_queues: set[str],
        delivered: Mapping[str, int],
        current_started_at: datetime | None,
        latest_started_at: datetime | None,
        children: Sequence[ChildView],
        now: datetime,
    ) -> None:
        """The state-based invariants: runs have workers, signals were not repeated, a deployment's children live
        with it and not past a failed sibling. ``current_started_at``: when the CI's deployment in progress started
        (None when there is none); ``latest_started_at``: the same, or when the last finished one started."""
        for queue, count in sorted(running_queues.items()):
            if count and queue not in worker_queues:
                self.violate("stranded", f"{count} workflows run on {queue}, which has no workers")
        for run_id, count in sorted(delivered.items()):
            if count > 1:
                self.violate("signalled-twice", f"run {run_id} received {count} migrate signals")
        since = current_started_at or now
        for child in children:
            if child.closed_at is None and child.started_at < since:
                where = "no deployment is in progress" if current_started_at is None else "a later one is"
                self.violate("child-outlived", f"{child.workflow_id} of an earlier deployment still runs; {where}")
        ours = [c for c in children if latest_started_at is not None and c.started_at >= latest_started_at]
        for failed in ours:
            if not failed.failed or failed.closed_at is None:
                continue
            for sibling in (c for c in ours if c is not failed):
                stopped = min(t for t in (sibling.stop_requested_at, sibling.closed_at, now) if t is not None)
                late = (stopped - failed.closed_at).total_seconds()
                if late > GRACE_S:
                    self.violate(
                        "child-outlived",
                        f"{failed.workflow_id} failed but {sibling.workflow_id} ran on for {late:.0f} s",
                    )

    def ended_aborted(self, flag: VersionFlag | None, *, edited: bool) -> None:
        """A deployment ended aborted; ``flag``: its new version's flag now (None: it never made one), ``edited``:
        a person changed that flag (their change wins over the route back)."""
        if flag is None or flag.archived or edited:
            return
        if percent := general_percent(flag):
            version = flag.info.version_id
            self.violate("abort-not-routed-back", f"the deployment of {version} ended aborted, its flag at {percent}%")

    def chain_ended(self, *, failed_run: bool, failed_deployments: Sequence[str]) -> None:
        """A CI run (with the runs it continued as new into) ended: it must fail if a deployment of it failed."""
        if failed_deployments and not failed_run:
            self.violate(
                "failure-forgotten",
                f"the CI run completed although deployments failed: {'; '.join(failed_deployments)}",
            )
