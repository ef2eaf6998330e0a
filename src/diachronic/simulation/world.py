"""A stateful fake world for the CI's activities: version flags, workflows running on task queues, worker
deployments. Scenarios set it up, act in it as a human would (change a percentage, archive a flag), and read
what is left at the end.

The world answers the activities it models by the activity contracts' semantics (``handlers()``), using the
real naming (``diachronic.versions``), the real Unleash-exact routing (``diachronic.flags.evaluation``), the flag
stores' compare-and-set rule (``evaluation.check_expected_percent``) and the planner's eligibility rule
(``planner.migration.select_runs``), so the CI under test sees what a flag store, Temporal and Kubernetes would show
it. A human can edit a flag at any moment, including between the automation's read and its write
(``before_next_write``).

It also guards the safety invariants of docs/architecture.md as a referee, independently of the CI's own checks,
recording in ``violations``: a deletion of workers whose task queue a live flag still carries, where workflows still
run, or whose version a deployment is about to make live (the deletion is refused); an archive of the newest flag or
of a flag that routes traffic; a second migrate signal delivered to one run; an automated write that replaced a
value the automation had not read; a version flag created (its dark strategy routes isTest traffic at once) or a
migrate signal sent to a version whose queue no worker polls (readiness, docs/gates.md).

The gates' reads: a version's queue has a poller while it has a worker set (``add_workers``, ``remove_workers``);
a version's health is clean unless a scenario breaks it (``break_version``: the evidence one rule fires on); the
code of a version accepts the state versions ``accepts`` says (its own, ``<version>``, by default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from diachronic.ci.activities import sweep_start
from diachronic.ci.contracts import (
    ActivityErrorInfo,
    ApplyFlagInput,
    CountRunningInput,
    DeleteWorkersInput,
    DeploymentObservation,
    FindWorkersInput,
    FlagList,
    FlagNameInput,
    FlagReading,
    HealthObservation,
    HealthRule,
    ListFlagsInput,
    MigrateBackEvidence,
    ObserveDeploymentInput,
    ObserveHealthInput,
    ObserveWorkersInput,
    ProbeMigrateBackInput,
    RunningCount,
    SetPercentInput,
    SweepInput,
    VersionHealth,
    WorkerSetList,
    WorkersObservation,
)
from diachronic.ci.freeze import FreezeReading, ReadFreezesInput
from diachronic.ci.planner import canary, migration, rollout
from diachronic.ci.planner.freeze import Freeze
from diachronic.ci.planner.sweep import SweepProgress
from diachronic.contracts import VersionInfo
from diachronic.errors import ConcurrentEdit
from diachronic.flags import GENERAL_TRAFFIC_TITLE, VersionFlag
from diachronic.flags.evaluation import (
    check_expected_percent,
    default_strategies,
    general_percent,
    general_strategy,
    new_rollout,
)
from diachronic.simulation.fakes import Handler, Sampler, SimulatedFailure
from diachronic.simulation.referee import routes_to_flag
from diachronic.versions import next_seq_id, sort_newest_first, task_queue, version_info
from diachronic.workers import LABEL_VERSION, WorkerSet, labels_match, worker_labels

__all__ = ["FlagEnd", "Run", "World"]

BROKEN_EVIDENCE: dict[HealthRule, dict[str, Any]] = {
    HealthRule.TASK_PROBLEMS: {"task_problems": 1},
    HealthRule.MIGRATED_FAILED: {"closed": 1, "failed": 1, "migrated_failed": 1},
    HealthRule.FAILURE_RATE: {"closed": 10, "failed": 9},
}
"""What the health read of a broken version shows, by the rule it makes fire."""


@dataclass
class Run:
    """One workflow run on a task queue."""

    workflow_id: str
    run_id: str
    task_queue: str
    workflow_type: str
    finishes_after: int | None = None  # observations of its queue before it completes on its own
    moving_to: str | None = None  # signalled to migrate: continues-as-new there after ``move_in`` observations
    move_in: int = 0
    started: int = 0  # the world's start order: visibility lists the newest first, and pages by it


@dataclass(frozen=True)
class FlagEnd:
    """A flag as a scenario expects to find it at the end; ``percent=None`` means any percentage."""

    version: str
    percent: int | None = None
    archived: bool = False

    def matches(self, flag: VersionFlag) -> bool:
        return (
            flag.info.version_id == self.version
            and flag.archived == self.archived
            and (self.percent is None or general_percent(flag) == self.percent)
        )

    def __str__(self) -> str:
        state = "archived" if self.archived else "live"
        return f"{self.version}@{'*' if self.percent is None else self.percent}%/{state}"


def describe_flag(flag: VersionFlag) -> str:
    state = "archived" if flag.archived else "live"
    return f"{flag.info.version_id}@{general_percent(flag)}%/{state}"


def _refuse(name: str, message: str) -> SimulatedFailure:
    return SimulatedFailure(ActivityErrorInfo(name=name, message=message, retryable=False))


@dataclass
class World:
    """Flags, runs and workers of one workflow name, plus what happened to them."""

    workflow_name: str
    seed: int = 0
    move_delay: int = 1  # observations of the old queue before a signalled run has moved
    environment: str = "development"  # the flag store's, and the one the CI serves
    sampler: Sampler = field(default_factory=Sampler)
    flags: dict[str, VersionFlag] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    finished: list[Run] = field(default_factory=list)
    deployments: dict[str, WorkerSet] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    delivered: Counter[str] = field(default_factory=Counter)  # migrate signals delivered, by run id
    moved_to: Counter[str] = field(default_factory=Counter)  # runs that moved after a migrate signal, by new queue
    resends: int = 0  # migrate signals dropped by Temporal's request-id dedup
    percent_writes: list[tuple[str, int]] = field(default_factory=list)  # automation's writes
    queued: list[str] = field(default_factory=list)  # versions accepted by the CI and not started yet
    deploying: Callable[[], Awaitable[list[str]]] | None = None  # the CI's own answer, when one runs
    hand_edits: list[str] = field(default_factory=list)
    broken: dict[str, HealthRule] = field(default_factory=dict)  # versions whose health evidence fires a rule
    looked_for_workers: Counter[str] = field(default_factory=Counter)  # readiness looks, by task queue
    accepts: dict[str, list[str]] = field(default_factory=dict)  # state versions a version's code restores
    freezes: list[Freeze] = field(default_factory=list)  # in force until the story lifts them
    violations: list[str] = field(default_factory=list)
    _request_ids: set[str] = field(default_factory=set)
    _read: dict[str, int | None] = field(default_factory=dict)  # what the automation last read (or wrote), by flag
    _before_write: list[Callable[[World], None]] = field(default_factory=list)
    _started: int = 0
    _starts: int = 0  # runs started, moved ones included: their start order

    # ------------------------------------------------------------------------------------------- set-up

    def add_version(
        self, version_id: str, *, percent: int = 100, archived: bool = False, enabled: bool = True
    ) -> VersionInfo:
        """A version flag as an earlier deployment left it (the next sequence id)."""
        info = version_info(self.workflow_name, next_seq_id(self.flags.values()), version_id, self.environment)
        strategies = default_strategies(info.flag_name, general_percent=percent)
        self.flags[info.flag_name] = VersionFlag(info=info, enabled=enabled, archived=archived, strategies=strategies)
        return info

    def start_workflows(self, version_id: str, count: int, *, finishes_after: int | None = None) -> list[Run]:
        """``count`` workflows of this type running on the version's task queue."""
        started = []
        for _ in range(count):
            workflow_id = f"{self.workflow_name}-wf{self._started}"
            self._started += 1
            run = Run(
                workflow_id,
                f"{workflow_id}-r0",
                task_queue(self.workflow_name, version_id),
                self.workflow_name,
                finishes_after=finishes_after,
            )
            self._add(run)
            started.append(run)
        return started

    def add_workers(self, version_id: str, *, namespace: str = "default") -> WorkerSet:
        """The version's worker set, a generated ``WorkerSet`` carrying the two labels."""
        deployment = self.sampler.sample(
            WorkerSet,
            self.seed + len(self.deployments),
            name=f"{self.workflow_name}-{version_id}".lower(),
            namespace=namespace,
            labels=worker_labels(self.workflow_name, version_id),
            task_queue=task_queue(self.workflow_name, version_id),
            running=True,
        )
        self.deployments[f"{deployment.namespace}/{deployment.name}"] = deployment
        return deployment

    def remove_workers(self, version_id: str) -> None:
        """The version's workers go away (scaled to zero, crashed): nobody polls its queue any more."""
        for key, worker_set in list(self.deployments.items()):
            if worker_set.labels.get(LABEL_VERSION) == version_id:
                del self.deployments[key]

    def break_version(self, version_id: str, rule: HealthRule) -> None:
        """The version's code is broken: the health evidence of its queue fires ``rule``."""
        self.broken[version_id] = rule

    # ------------------------------------------------------------------------------------------- a human

    def _edit(self, version_id: str, what: str, change: Callable[[VersionFlag], VersionFlag]) -> None:
        flag = self.flag_of(version_id)
        if flag is None:
            raise KeyError(f"no flag of version {version_id}")
        self.flags[flag.info.flag_name] = change(flag)
        self.hand_edits.append(f"{flag.info.flag_name}: {what}")

    def hand_set_percent(self, version_id: str, percent: int) -> None:
        """Somebody changes "All other traffic" in the Unleash UI."""
        self._edit(version_id, f"percent set to {percent}", lambda f: _with_percent(f, percent))

    def hand_disable_general(self, version_id: str) -> None:
        self._edit(
            version_id,
            "general strategy disabled",
            lambda f: f.model_copy(
                update={
                    "strategies": [
                        s.model_copy(update={"disabled": True}) if s.title == GENERAL_TRAFFIC_TITLE else s
                        for s in f.strategies
                    ]
                }
            ),
        )

    def hand_delete_general(self, version_id: str) -> None:
        self._edit(
            version_id,
            "general strategy deleted",
            lambda f: f.model_copy(
                update={"strategies": [s for s in f.strategies if s.title != GENERAL_TRAFFIC_TITLE]}
            ),
        )

    def hand_archive(self, version_id: str) -> None:
        self._edit(version_id, "archived", lambda f: f.model_copy(update={"archived": True}))

    def before_next_write(self, action: Callable[[World], None]) -> None:
        """``action`` happens right before the automation's next percentage write lands: after it read the flag,
        before its write (a human's edit in that gap must win)."""
        self._before_write.append(action)

    def finish_workflows(self, version_id: str) -> None:
        """Every workflow on the version's queue completes (as users' workflows eventually do)."""
        queue = task_queue(self.workflow_name, version_id)
        for run in self.running_on(queue):
            self._close(run)

    # ------------------------------------------------------------------------------------------- reading

    def flags_newest_first(self, *, include_archived: bool = True) -> list[VersionFlag]:
        flags = sort_newest_first(list(self.flags.values()))
        return flags if include_archived else [f for f in flags if not f.archived]

    def flag_of(self, version_id: str) -> VersionFlag | None:
        """The newest flag of this version (a redeployed version has several)."""
        return next((f for f in self.flags_newest_first() if f.info.version_id == version_id), None)

    def percent(self, version_id: str) -> int | None:
        flag = self.flag_of(version_id)
        return None if flag is None else general_percent(flag)

    def running_on(self, queue: str) -> list[Run]:
        return [r for r in self.runs.values() if r.task_queue == queue]

    def running_by_version(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        prefix = f"{self.workflow_name}-"
        for run in self.runs.values():
            counts[run.task_queue.removeprefix(prefix)] += 1
        return dict(counts)

    def worker_versions(self) -> set[str]:
        return {d.labels[LABEL_VERSION] for d in self.deployments.values()}

    def flag_table(self) -> list[str]:
        return [describe_flag(f) for f in self.flags_newest_first()]

    # ------------------------------------------------------------------------------------------- time passes

    def _add(self, run: Run) -> None:
        self._starts += 1
        run.started = self._starts
        self.runs[run.run_id] = run

    def _close(self, run: Run) -> None:
        del self.runs[run.run_id]
        self.finished.append(run)

    def observe(self, queue: str) -> None:
        """Someone looked at the queue: signalled runs move on, finishing runs get closer to their end."""
        for run in self.running_on(queue):
            if run.moving_to is not None:
                if run.move_in > 0:
                    run.move_in -= 1
                    continue
                self._close(run)
                generation = int(run.run_id.rsplit("-r", 1)[1]) + 1
                self._add(Run(run.workflow_id, f"{run.workflow_id}-r{generation}", run.moving_to, run.workflow_type))
                self.moved_to[run.moving_to] += 1
            elif run.finishes_after is not None:
                run.finishes_after -= 1
                if run.finishes_after <= 0:
                    self._close(run)

    # ------------------------------------------------------------------------------------------- referee

    def _receives_traffic(self, flag_name: str) -> bool:
        """Does any new start (isTest or not) land on this flag? Decided exactly, not by probing workflow ids."""
        return routes_to_flag(self.flags_newest_first(include_archived=False), flag_name)

    async def deploying_versions(self) -> list[str]:
        """Versions the CI queues or deploys now: its own answer when a CI runs, else what the scenario noted."""
        return await self.deploying() if self.deploying is not None else list(self.queued)

    async def _check_delete(self, deployment: WorkerSet) -> list[str]:
        version = deployment.labels.get(LABEL_VERSION, "")
        queue = task_queue(self.workflow_name, version)
        problems = []
        if running := self.running_on(queue):
            problems.append(f"{len(running)} workflows still run on it")
        if version in await self.deploying_versions():
            problems.append("a deployment of it is queued or in progress: it will be live again")
        carriers = [
            f.info.flag_name for f in self.flags_newest_first(include_archived=False) if f.info.task_queue == queue
        ]
        if carriers:
            problems.append(f"live flags carry its task queue: {', '.join(carriers)}")
        return problems

    def _served(self, flags: list[VersionFlag]) -> list[VersionFlag]:
        """Flags handed to the automation: remember what each held, to referee the writes that follow."""
        for flag in flags:
            self._read[flag.info.flag_name] = general_percent(flag)
        return flags

    def _polled(self, queue: str) -> bool:
        return any(worker_set.task_queue == queue for worker_set in self.deployments.values())

    def _signal(self, run: Run, to_queue: str) -> None:
        if not self._polled(to_queue):
            self.violations.append(f"a migrate signal sent {run.run_id} to {to_queue}, which no worker polls")
        request_id = f"diachronic-migrate:{to_queue}:{run.run_id}"  # as the real activity names it
        if request_id in self._request_ids:
            self.resends += 1  # Temporal drops it: same request id, same run
            return
        self._request_ids.add(request_id)
        self.delivered[run.run_id] += 1
        if self.delivered[run.run_id] > 1:
            self.violations.append(f"run {run.run_id} received {self.delivered[run.run_id]} migrate signals")
        run.moving_to, run.move_in = to_queue, self.move_delay

    # ------------------------------------------------------------------------------------------- activities

    def handlers(self) -> dict[str, Handler]:
        """The activities this world answers, by activity name (the rest stay generated)."""
        return {
            "observe_deployment": self.observe_deployment,
            "list_version_flags": self.list_version_flags,
            "apply_version_flag": self.apply_version_flag,
            "set_traffic_percent": self.set_traffic_percent,
            "read_version_flag": self.read_version_flag,
            "archive_version_flag": self.archive_version_flag,
            "count_running": self.count_running,
            "migrate_sweep": self.migrate_sweep,
            "find_workers": self.find_workers,
            "delete_workers": self.delete_workers,
            "observe_workers": self.observe_workers,
            "observe_health": self.observe_health,
            "probe_migrate_back": self.probe_migrate_back,
            "read_freezes": self.read_freezes,
        }

    def read_freezes(self, input: ReadFreezesInput) -> FreezeReading:
        """The freezes a story set, no window: generated ones would hold the CI's queue at random."""
        return FreezeReading(freezes=list(self.freezes), windows=[])

    def _mine(self, workflow_name: str) -> bool:
        return workflow_name == self.workflow_name

    def observe_deployment(self, input: ObserveDeploymentInput) -> DeploymentObservation:
        if input.version_id in self.queued:  # the CI took it off its queue
            self.queued.remove(input.version_id)
        mine = self._mine(input.workflow_name)
        flags = self._served(self.flags_newest_first(include_archived=False)) if mine else []
        return DeploymentObservation(flags=flags, environment=self.environment)

    def list_version_flags(self, input: ListFlagsInput) -> FlagList:
        mine = self._mine(input.workflow_name)
        return FlagList(flags=self._served(self.flags_newest_first(include_archived=False)) if mine else [])

    def apply_version_flag(self, input: ApplyFlagInput) -> VersionFlag:
        """Flag store semantics: the newest live flag of this version is kept; else a new flag (next seq)."""
        if not self._mine(input.workflow_name):
            raise _refuse("InvalidInput", f"this world only holds {self.workflow_name}")
        live = self.flags_newest_first(include_archived=False)
        if live and live[0].info.version_id == input.version_id:
            return self._served([live[0]])[0]
        top = next(iter(self.flags_newest_first()), None)
        if top is not None and top.archived and top.info.version_id == input.version_id:  # revived
            self.flags[top.info.flag_name] = VersionFlag(
                info=top.info, enabled=True, strategies=default_strategies(top.info.flag_name)
            )
            return self._served([self.flags[top.info.flag_name]])[0]
        if not self._polled(task_queue(self.workflow_name, input.version_id)):
            self.violations.append(
                f"a flag of {input.version_id} created (its dark strategy routes isTest traffic) before a worker polls"
            )
        info = self.add_version(input.version_id, percent=0)
        return self._served([self.flags[info.flag_name]])[0]

    def set_traffic_percent(self, input: SetPercentInput) -> BaseModel | None:
        """A compare-and-set write, as both flag stores do it; refereed against what the automation had read."""
        while self._before_write:
            self._before_write.pop(0)(self)
        flag = self.flags.get(input.flag_name)
        if flag is None or flag.archived:
            raise _refuse("NotFound", f"flag {input.flag_name!r} {'is archived' if flag else 'does not exist'}")
        try:
            check_expected_percent(input.flag_name, flag.strategies, input.expected)
        except ConcurrentEdit as edit:
            if rollout.write_landed(input.percent, edit.found):  # as the activity: a retry after a lost reply
                return None
            raise _refuse(ConcurrentEdit.name, edit.message) from None
        held, read = general_percent(flag), self._read.get(input.flag_name)
        if held != read:
            self.violations.append(
                f"an automated write of {input.percent}% replaced {held}% on {input.flag_name}, a value it had not "
                f"read (it last read {read}%)"
            )
        self.flags[input.flag_name] = _with_percent(flag, input.percent)
        self.percent_writes.append((input.flag_name, input.percent))
        self._read[input.flag_name] = input.percent
        return None

    def read_version_flag(self, input: FlagNameInput) -> FlagReading:
        flag = self.flags.get(input.flag_name)
        return FlagReading(flag=self._served([flag])[0] if flag is not None else None)

    def archive_version_flag(self, input: FlagNameInput) -> BaseModel | None:
        flag = self.flags.get(input.flag_name)
        if flag is None:
            raise _refuse("NotFound", f"flag {input.flag_name!r} does not exist")
        if flag.archived:
            return None
        live = self.flags_newest_first(include_archived=False)
        if live and live[0].info.flag_name == input.flag_name:
            self.violations.append(f"archived {input.flag_name}, the newest version's flag")
        elif self._receives_traffic(input.flag_name):
            self.violations.append(f"archived {input.flag_name} while it routes traffic")
        self.flags[input.flag_name] = flag.model_copy(update={"archived": True})
        self.archived.append(input.flag_name)
        if not any(f.enabled for f in self.flags_newest_first(include_archived=False)):
            self.violations.append(f"archiving {input.flag_name} left {self.workflow_name} without an enabled flag")
        return None

    def count_running(self, input: CountRunningInput) -> RunningCount:
        self.observe(input.task_queue)
        return RunningCount(running=len(self.running_on(input.task_queue)))

    def migrate_sweep(self, input: SweepInput) -> SweepProgress:
        """What the real activity does, against this world: pages of the old queue (newest start first, the cursor a
        start in that order, the world's clock its start counter), the planner's selection on each, one signal per
        selected run, a heartbeat after each page (so a retried attempt goes on from there, as the real one does)."""
        progress = sweep_start(input, lambda: _start_time(self._starts + 1))
        if progress.call_done(input.pages):
            return progress
        self.observe(input.from_task_queue)
        cohort = input.cohort
        if cohort is not None and progress.candidates is None:  # no query language here: a cohort's query matches all
            candidates = sum(r.workflow_type == input.workflow_name for r in self.running_on(input.from_task_queue))
            progress = canary.start_cohort_call(cohort, progress, candidates)
        since = input.since or _start_time(0)
        listed = sorted(
            (
                r
                for r in self.running_on(input.from_task_queue)
                if r.workflow_type == input.workflow_name and _start_time(r.started) >= since
            ),
            key=lambda r: r.started,
            reverse=True,
        )
        routing = migration.routing_key(input.flags)
        while True:
            now_live = self.flags_newest_first(include_archived=False) if self._mine(input.workflow_name) else []
            if migration.routing_key(now_live) != routing:  # a look the referee does not count as the rollout's read
                return progress.model_copy(update={"stale": True})
            before = int(progress.cursor) if progress.cursor else None
            rest = [r for r in listed if before is None or r.started < before]
            page = rest[: input.batch_size]
            chosen = migration.select_runs(
                [migration.RunOnQueue(r.workflow_id, r.run_id, r.workflow_type, _start_time(r.started)) for r in page],
                input.flags,
                workflow_name=input.workflow_name,
                to_task_queue=input.to_version.task_queue,
                covered=input.covered,
                recheck=input.recheck,
                at_most=canary.call_budget(cohort, progress) if cohort is not None else None,
            )
            for run in chosen.runs:
                self._signal(self.runs[run.run_id], input.to_version.task_queue)
            full = cohort is not None and canary.call_budget(cohort, progress) <= len(chosen.first)
            more = len(rest) > len(page) and not full  # a full cohort ends its sweep, as the real activity's
            progress = progress.after_page(
                cursor=str(page[-1].started) if more else None,
                rows=len(page),
                eligible=chosen.eligible,
                signalled=len(chosen.first),
                resent=len(chosen.again),
            )
            if activity.in_activity():
                activity.heartbeat(progress)
            if progress.call_done(input.pages):
                return progress

    def observe_workers(self, input: ObserveWorkersInput) -> WorkersObservation:
        self.looked_for_workers[input.task_queue] += 1
        pollers = sum(1 for worker_set in self.deployments.values() if worker_set.task_queue == input.task_queue)
        return WorkersObservation(task_queue=input.task_queue, pollers=pollers)

    def observe_health(self, input: ObserveHealthInput) -> HealthObservation:
        """Clean, unless a scenario broke the new version: then the evidence its rule fires on."""
        version = input.new_task_queue.removeprefix(f"{self.workflow_name}-")
        evidence: dict[str, Any] = {}
        rule = self.broken.get(version)
        if rule is not None and (rule is not HealthRule.MIGRATED_FAILED or self.moved_to[input.new_task_queue]):
            evidence = BROKEN_EVIDENCE[rule] | {"examples": [f"{self.workflow_name}-broken"]}
        new = VersionHealth.model_validate({"task_queue": input.new_task_queue, "task_problems": 0, **evidence})
        flag = self.flags.get(input.flag_name)
        return HealthObservation(
            new=new,
            old=VersionHealth(task_queue=input.old_task_queue, task_problems=0),
            percent=general_percent(flag) if flag is not None and not flag.archived else None,
        )

    def probe_migrate_back(self, input: ProbeMigrateBackInput) -> MigrateBackEvidence:
        old = input.old_task_queue.removeprefix(f"{self.workflow_name}-")
        new = input.new_task_queue.removeprefix(f"{self.workflow_name}-")
        return MigrateBackEvidence(
            old_accepts=self.accepts.get(old, [old]),
            new_state_versions=[new],
            running_on_new_queue=len(self.running_on(input.new_task_queue)),
        )

    async def find_workers(self, input: FindWorkersInput) -> WorkerSetList:
        found = [d for d in self.deployments.values() if labels_match(d.labels, input.workflow_name, input.version_id)]
        return WorkerSetList(
            worker_sets=sorted(found, key=lambda d: d.name), deploying_versions=await self.deploying_versions()
        )

    async def delete_workers(self, input: DeleteWorkersInput) -> BaseModel | None:
        """Refuses (and records) the deletion of a live version's workers; a vanished deployment is deleted."""
        key = f"{input.worker_set.namespace}/{input.worker_set.name}"
        current = self.deployments.get(key)
        if current is None or (input.worker_set.uid is not None and current.uid != input.worker_set.uid):
            return None
        problems = await self._check_delete(current)
        if problems:
            message = f"deleting the workers of {current.labels.get(LABEL_VERSION)}: {'; '.join(problems)}"
            self.violations.append(message)
            raise _refuse("UnsafeDelete", message)
        if self.deployments.pop(key, None) is not None:  # a retried attempt may find it gone while it checked
            self.deleted.append(key)
        return None


def _start_time(started: int) -> datetime:
    """The world's clock: its start counter, as the time visibility would show."""
    return datetime.fromtimestamp(started, UTC)


def _with_percent(flag: VersionFlag, percent: int) -> VersionFlag:
    """``set_general_percent``'s semantics: change the rollout (re-create a deleted strategy), keep ``disabled``."""
    general = general_strategy(flag.strategies)
    if general is None:
        strategies = [*flag.strategies, new_rollout(flag.info.flag_name, GENERAL_TRAFFIC_TITLE, percent)]
    else:
        params: dict[str, Any] = {**general.parameters, "rollout": str(percent)}
        strategies = [s.model_copy(update={"parameters": params}) if s is general else s for s in flag.strategies]
    return flag.model_copy(update={"strategies": strategies})
