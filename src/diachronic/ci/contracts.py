"""Contracts of the CI: the names of its workflows, signals, updates and queries, every activity's input and
output, the children's inputs and results, and the ``status`` snapshot. Activities declare their models in their
type hints (``CIActivities``); failures carry ``ActivityErrorInfo``. ``diachronic.simulation.fakes.activity_contracts``
reads them to generate fakes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from diachronic.ci.planner.freeze import Freeze
from diachronic.ci.planner.migration import Coverage
from diachronic.ci.planner.schedule import validate_steps
from diachronic.ci.planner.sweep import Sweep, SweepLog, SweepPacing
from diachronic.contracts import Contract, DeployEvent, RolloutStep, State, VersionInfo
from diachronic.errors import InvalidInput
from diachronic.flags import VersionFlag
from diachronic.notify.events import DeploymentFacts, Notification
from diachronic.temporal import check_filter
from diachronic.workers import WorkerSet

# ----------------------------------------------------------------------------------------------- names

ROLLOUT_WORKFLOW = "rollout"
MIGRATION_WORKFLOW = "migration"
CLEANUP_WORKFLOW = "cleanup"
STATUS_QUERY = "status"  # every CI workflow answers it with its status model
DB_QUERY = "db"  # the CI workflow's whole state (``CIState``)
DEPLOYING_QUERY = "deploying"  # versions the CI workflow's queue holds or deploys now (their workers must stay)
DEPLOY_UPDATE = "diachronic.ci.deploy"
ROLLOUT_PAUSE_SIGNAL = "diachronic.rollout.pause"  # sent by the CI workflow to its rollout child
ROLLOUT_RESUME_SIGNAL = "diachronic.rollout.resume"
ROLLOUT_PROMOTE_SIGNAL = "diachronic.rollout.promote"


class Control(StrEnum):
    """A human's command to the deployment in progress: the CLI command, the dashboard's button, an update."""

    CONTINUE = "continue"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ABORT = "abort"
    ROLLBACK = "rollback"

    @property
    def update(self) -> str:
        """The name of the CI workflow's update that carries it."""
        return f"diachronic.ci.{self.value}"

    @property
    def help(self) -> str:
        return _CONTROL_HELP[self]


_CONTROL_HELP = {
    Control.CONTINUE: "Continue a dark deploy: start the rollout.",
    Control.CANCEL: "Stop the deployment's automation; flags stay as they are.",
    Control.PAUSE: "Hold the rollout at its current percentage.",
    Control.RESUME: "Resume a paused rollout (the current step waits its full time again).",
    Control.PROMOTE: "Route 100 % to the new version now.",
    Control.ABORT: "Route new starts back to the previous version and stop migrating.",
    Control.ROLLBACK: "Route new starts back to the previous version, at once or in --steps; stop migrating; "
    "with --migrate-back, move workflows back when the old code accepts their state.",
}


def rollout_workflow_id(workflow_name: str) -> str:
    return f"rollout.{workflow_name}"


def migration_workflow_id(workflow_name: str) -> str:
    return f"migration.{workflow_name}"


def cleanup_workflow_id(old_task_queue: str) -> str:
    return f"cleanup.{old_task_queue}"


MIGRATION_BATCH_SIZE = 1000
"""Runs per page of a sweep: visibility's largest page (the server's default ``frontend.visibilityMaxPageSize``)."""
MAX_BATCH_SIZE = MIGRATION_BATCH_SIZE
MIGRATION_PAGES_PER_CALL = 10
"""Pages one call of the migrate activity reads: the workflow records the sweep's cursor at least this often."""
MIGRATION_CONCURRENCY = 100
"""Migrate signals in flight at once (one RPC each)."""


def _schedule(steps: list[RolloutStep]) -> list[RolloutStep]:
    try:
        return validate_steps(steps)
    except InvalidInput as error:
        raise ValueError(error.message) from None


Schedule = Annotated[list[RolloutStep], AfterValidator(_schedule)]
"""Rollout steps, validated wherever they arrive (``planner.schedule.validate_steps``): a bad schedule is refused
with its reason, one that stops short of 100 % gets a final 100 % step."""

DEFAULT_STEP_TIMEOUT_S = 3600.0
"""How long one step (an activity, retried by Temporal) may keep failing before the deployment fails with
``StepTimedOut``: an outage longer than this ends the deployment with a typed reason."""


# ----------------------------------------------------------------------------------------------- activity errors


class ActivityErrorInfo(Contract):
    """What a failed activity reports: a stable ``name``, a message safe to show, and whether to retry."""

    name: str
    message: str
    retryable: bool = True


# ----------------------------------------------------------------------------------------------- activity I/O


class ListFlagsInput(Contract):
    workflow_name: str


class FlagList(Contract):
    flags: list[VersionFlag]


class ApplyFlagInput(Contract):
    workflow_name: str
    version_id: str


class SetPercentInput(Contract):
    """A conditional write: only if ``All other traffic`` still holds ``expected`` (what the automation read)."""

    flag_name: str
    percent: int = Field(ge=0, le=100)
    expected: int = Field(ge=0, le=100)


class FlagNameInput(Contract):
    flag_name: str
    workflow_name: str


class FlagReading(Contract):
    """The flag as it is now (None when it does not exist)."""

    flag: VersionFlag | None


class ObserveDeploymentInput(Contract):
    workflow_name: str
    version_id: str


class DeploymentObservation(Contract):
    """What a deployment's start is decided on (``planner.deployment.plan_start``)."""

    flags: list[VersionFlag] = Field(description="the workflow's live version flags, newest first")
    environment: str = Field(description="the deployment environment this CI serves (DIACHRONIC_ENVIRONMENT)")
    twins: list[VersionInfo] = Field(
        default_factory=list, description="versions of other workflows whose task queue is this version's"
    )


class SweepInput(Contract):
    """One call of the migrate activity: go on with a sweep of the old queue from ``cursor`` for up to ``pages``
    pages (``batch_size`` runs each), signalling the runs of each page that ``flags`` route to the new version."""

    workflow_name: str
    from_task_queue: str
    to_version: VersionInfo
    flags: list[VersionFlag] = Field(description="the live flags, as the workflow just read them")
    covered: Coverage | None = Field(default=None, description="runs an earlier clean sweep signalled: skipped")
    recheck: bool = Field(default=False, description="signal the covered runs again (the periodic full sweep)")
    since: datetime | None = Field(default=None, description="a recent sweep: only runs started since then")
    cursor: str | None = Field(default=None, description="the page to read next; None: the sweep starts")
    batch_size: int = Field(default=MIGRATION_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="runs per page")
    pages: int = Field(default=MIGRATION_PAGES_PER_CALL, ge=1, description="pages this call reads at most")
    concurrency: int = Field(default=MIGRATION_CONCURRENCY, ge=1, description="signals in flight at once")
    cohort: Cohort | None = Field(
        default=None, description="a canary cohort moves: signal at most its remaining members, among its query's"
    )


class CountRunningInput(Contract):
    task_queue: str


class RunningCount(Contract):
    running: int = Field(ge=0)


class FindWorkersInput(Contract):
    workflow_name: str
    version_id: str


class WorkerSetList(Contract):
    worker_sets: list[WorkerSet]
    deploying_versions: list[str] = Field(
        default_factory=list, description="versions the CI's queue holds or deploys now: their workers must stay"
    )


class DeleteWorkersInput(Contract):
    worker_set: WorkerSet


class Empty(Contract):
    pass


# ----------------------------------------------------------------------------------------------- gates (docs/gates.md)

DEFAULT_READY_TIMEOUT_S = 600.0
"""How long a deployment waits for a worker to poll the new version's task queue before ``WorkersNotReady``."""
DEFAULT_GATE_TIMEOUT_S = 600.0
DEFAULT_MAX_FAILURE_RATE = 0.2
"""A broken build fails most of its runs; a healthy one rarely more than a few percent."""
DEFAULT_MIN_SAMPLE = 5
DEFAULT_CANARY_SOAK_S = 300.0
MAX_EXAMPLES = 10
"""Workflow ids a health verdict quotes as evidence."""
HEALTH_WORKFLOW = "health"
HEALTH_STOP_SIGNAL = "diachronic.ci.health.stop"
"""The CI's word that the deployment ended: the health workflow ends healthy (a signal by workflow id reaches the
run in progress, even after continue-as-new)."""


def health_workflow_id(workflow_name: str) -> str:
    return f"health.{workflow_name}"


def gate_workflow_id(task_queue: str, step_index: int, deployment_started: datetime) -> str:
    """One id per gate run: the new version's queue, the step, and when the deployment started (a redeploy of the
    same version runs its gate again)."""
    return f"gate.{task_queue}.{step_index}.{deployment_started:%Y%m%dT%H%M%S%f}"


class GateOptions(Contract):
    """``deploy --gate``: a validation workflow the CI runs on the new version's task queue before traffic moves."""

    workflow_type: str = Field(min_length=1, max_length=200, description="the gate workflow's type")
    input: Any = Field(default=None, description="its one argument (JSON); none when absent")
    timeout_s: float = Field(default=DEFAULT_GATE_TIMEOUT_S, gt=0, description="a gate running longer fails")
    every_step: bool = Field(default=False, description="run it again before each rollout step")


class HealthThresholds(Contract):
    """When the health analysis aborts: see ``diachronic.ci.planner.health`` for the rules."""

    max_failure_rate: float = Field(default=DEFAULT_MAX_FAILURE_RATE, ge=0, le=1)
    min_sample: int = Field(default=DEFAULT_MIN_SAMPLE, ge=1, description="closed runs before a rate is judged")


CANARY_QUERY = "--canary-query"
"""The option a cohort's query comes from: errors about the query name it."""


def _cohort_query(text: str) -> str:
    try:
        return check_filter(text, CANARY_QUERY)
    except InvalidInput as error:
        raise ValueError(error.message) from None


class CanaryOptions(Contract):
    """``--migrate-canary N|P%``: migration first moves a cohort, watches it for ``soak_s``, then the rest."""

    size: int | None = Field(default=None, ge=1, description="N workflows")
    percent: float | None = Field(
        default=None, gt=0, le=100, description="P % of the candidates: the running workflows its query matches"
    )
    query: Annotated[str, AfterValidator(_cohort_query)] | None = Field(
        default=None, min_length=1, max_length=2000, description="a visibility query the cohort must also match"
    )
    soak_s: float = Field(default=DEFAULT_CANARY_SOAK_S, ge=0)

    @model_validator(mode="after")
    def _one_size(self) -> CanaryOptions:
        if (self.size is None) == (self.percent is None):
            raise ValueError("a canary cohort is a number of workflows or a percentage: give exactly one")
        return self


class Cohort(Contract):
    """What one migration batch may signal while a canary cohort moves (``diachronic.ci.planner.canary``)."""

    options: CanaryOptions
    target: int | None = Field(default=None, ge=0, description="the cohort's size; None: fixed by this look")
    signalled: int = Field(default=0, ge=0, description="members signalled so far")


class ObserveWorkersInput(Contract):
    task_queue: str


class WorkersObservation(Contract):
    """Who polls a task queue for workflow tasks now (Temporal's DescribeTaskQueue)."""

    task_queue: str
    pollers: int = Field(ge=0, description="workers that polled within the last ``LIVE_POLLER_S`` seconds")


class HealthRule(StrEnum):
    """The rules of the health analysis, in the order they are checked (``diachronic.ci.planner.health``)."""

    TASK_PROBLEMS = "task-problems"
    MIGRATED_FAILED = "migrated-failed"
    FAILURE_RATE = "failure-rate"


class VersionHealth(Contract):
    """One version's runs of the workflow type, closed within the window, as Temporal's visibility counts them.

    A run that continued as new (a migration, a long history) is not an outcome: it is not counted."""

    task_queue: str
    closed: int = Field(default=0, ge=0, description="completed, failed, timed out, terminated or cancelled")
    failed: int = Field(default=0, ge=0)
    timed_out: int = Field(default=0, ge=0)
    terminated: int = Field(default=0, ge=0)
    task_problems: int | None = Field(
        default=None, ge=0, description="running workflows flagged TemporalReportedProblems; None: not on this server"
    )
    migrated_failed: int = Field(default=0, ge=0, description="workflows that failed here after moving here")
    examples: list[str] = Field(default_factory=list, max_length=MAX_EXAMPLES, description="ids of failing runs")

    @property
    def failures(self) -> int:
        return self.failed + self.timed_out + self.terminated


class ObserveHealthInput(Contract):
    workflow_name: str
    new_task_queue: str
    old_task_queue: str
    flag_name: str = Field(description="the new version's flag: its percentage names the step")
    since: datetime = Field(description="the window's start (both versions are read over the same window)")


class HealthObservation(Contract):
    new: VersionHealth
    old: VersionHealth
    percent: int | None = Field(default=None, description="the new version's general percentage now")


class HealthVerdict(Contract):
    """The health analysis's answer: the rule that fired (None: healthy), and the evidence."""

    rule: HealthRule | None = None
    detail: str
    new: VersionHealth
    old: VersionHealth
    at: datetime

    @property
    def branch(self) -> HealthRule | None:
        return self.rule


class StepHealth(Contract):
    """The health numbers while the new version held one percentage (one rollout step)."""

    percent: int | None
    new: VersionHealth
    old: VersionHealth
    at: datetime


class HealthInput(Contract):
    workflow_name: str
    from_version: VersionInfo
    to_version: VersionInfo
    thresholds: HealthThresholds = Field(default_factory=HealthThresholds)
    since: datetime
    poll_interval_s: float = Field(default=1.0, gt=0)
    continue_as_new_after: int = Field(default=2000, ge=10)
    step_timeout_s: float = Field(default=DEFAULT_STEP_TIMEOUT_S, gt=0)


class HealthState(State):
    polls: int = 0
    steps: list[StepHealth] = Field(default_factory=list, description="one entry per percentage held (bounded)")
    breach: HealthVerdict | None = None


class HealthRun(Contract):
    input: HealthInput
    state: HealthState | None = None


class HealthResult(Contract):
    breach: HealthVerdict | None = Field(default=None, description="None: stopped healthy (the deployment ended)")


class ProbeMigrateBackInput(Contract):
    workflow_name: str
    old_task_queue: str
    new_task_queue: str


class MigrateBackEvidence(Contract):
    """What the old and new code say about their state (the migrate SDK's ``diachronic.v1.snapshot``)."""

    old_accepts: list[str] | None = Field(
        default=None, description="state versions the old version's code restores; None: it could not be asked"
    )
    new_state_versions: list[str] = Field(
        default_factory=list, description="state versions of the workflows running on the new version"
    )
    running_on_new_queue: int = Field(default=0, ge=0)
    detail: str | None = Field(default=None, description="why the old version could not be asked")


class GateStage(StrEnum):
    """Where a deployment stands with its gates before traffic moves."""

    WAITING_FOR_WORKERS = "waiting_for_workers"  # no worker polls the new version's task queue yet
    GATE_RUNNING = "gate_running"  # the gate workflow runs on the new version's task queue
    READY = "ready"  # workers poll and the gate (if any) passed: traffic may move


class GateRun(Contract):
    """One run of the gate workflow."""

    workflow_id: str
    step_index: int = Field(ge=0)
    passed: bool | None = Field(default=None, description="None: running")
    detail: str | None = None


MAX_GATE_RUNS = 20


class GatesRecord(State):
    """A deployment's gates, as ``status`` and the dashboard show them."""

    stage: GateStage | None = None
    waiting_for: str | None = Field(default=None, description="``waiting for workers on <queue>``")
    ready_at: datetime | None = None
    gate_runs: list[GateRun] = Field(default_factory=list, description=f"the last {MAX_GATE_RUNS}")
    health_workflow_id: str | None = Field(default=None, description="the health workflow watching the deployment")
    health: list[StepHealth] = Field(default_factory=list, description="health numbers per step")
    breach: HealthVerdict | None = None
    redeploy_rollback: bool = Field(default=False, description="a roll-back by redeploy: at once, workflows stay")
    moves_back: bool = Field(default=False, description="workflows move back: the old code accepts their state")
    migrate_back: str | None = Field(default=None, description="why workflows move back, or stay")


class CanaryPhase(StrEnum):
    COHORT = "cohort"  # moving the cohort only
    SOAK = "soak"  # the cohort moved: watching it until the soak ends
    REST = "rest"  # no canary, or the soak passed: move everyone


class CanaryProgress(Contract):
    """The canary cohort of the migration, as ``status`` shows it; carried in the migration's state (a few numbers,
    whatever the number of workflows)."""

    phase: CanaryPhase
    target: int | None = Field(default=None, description="the cohort's size, fixed at the first look")
    signalled: int = Field(default=0, ge=0, description="cohort members signalled so far")
    candidates_left: int | None = Field(default=None, ge=0, description="candidates not signalled, at the last look")
    soak_until: datetime | None = Field(default=None, description="the rest moves from then on")

    @property
    def summary(self) -> str:
        """``cohort 3/5``, ``soak until 14:05:09 UTC``, ``rest`` (what ``status`` and the dashboard say)."""
        if self.phase is CanaryPhase.COHORT:
            return f"canary cohort {self.signalled}/{'?' if self.target is None else self.target}"
        if self.phase is CanaryPhase.SOAK and self.soak_until is not None:
            return f"canary soak until {self.soak_until.astimezone(UTC):%H:%M:%S} UTC"
        return "canary rest: the cohort passed its soak, the rest moves"


# ----------------------------------------------------------------------------------------------- children


class RolloutOutcome(StrEnum):
    COMPLETED = "completed"  # reached 100 % on schedule (or promoted)
    STOPPED = "stopped"  # a human changed the flag: automation stepped aside
    ABORTED = "aborted"  # the gate before a step failed: the deployment aborts


class RolloutInput(Contract):
    workflow_name: str
    to_version: VersionInfo
    steps: Schedule
    poll_interval_s: float = Field(default=1.0, gt=0)
    continue_as_new_after: int = Field(default=2000, ge=10, description="history events before continue-as-new")
    step_timeout_s: float = Field(default=DEFAULT_STEP_TIMEOUT_S, gt=0)
    gate: GateOptions | None = Field(default=None, description="with every_step: run before each step after the first")
    deployment_started: datetime | None = Field(default=None, description="names the gate runs (gate_workflow_id)")
    report: DeploymentFacts | None = Field(default=None, description="the deployment its notifications tell of")
    force_reason: str | None = Field(default=None, description="a forced deployment: its steps go through freezes")


class RolloutState(State):
    started: bool = False  # the first look at the flag decided where the rollout starts
    step_index: int = 0
    percent: int = 0  # what the flag holds as far as the automation knows: its last write, or where it started
    step_started_at: datetime | None = None
    resumed_at: datetime | None = None  # a resumed step waits its full time again from here
    paused: bool = False
    promote: bool = False
    stop_reason: str | None = None
    stop_detail: str | None = None
    history: list[tuple[datetime, int]] = Field(default_factory=list)
    gated_through: int = 0  # the gate passed before every step up to this index
    gate: GateRun | None = None  # the last gate run
    pauses: int = 0  # how many times it was paused: tells one pause's notification from the next
    outbox: list[Notification] = Field(default_factory=list, description="notifications not published yet")
    frozen: Freeze | None = Field(default=None, description="the freeze holding the step that is due")
    overrode_freeze: Freeze | None = Field(default=None, description="the freeze a forced step went through")


class RolloutRun(Contract):
    input: RolloutInput
    state: RolloutState | None = None


class RolloutResult(Contract):
    outcome: RolloutOutcome
    percent: int
    reason: str | None = None
    detail: str | None = None
    gate: GateRun | None = Field(default=None, description="the last gate run before a step (--gate-every-step)")
    unpublished: list[Notification] = Field(default_factory=list, description="left for the CI to publish")
    overrode_freeze: Freeze | None = Field(default=None, description="the freeze a forced step went through")


class RolloutStatus(Contract):
    percent: int
    step_index: int
    steps: list[RolloutStep]
    next_percent: int | None
    next_step_at: datetime | None
    paused: bool
    stop_reason: str | None
    stop_detail: str | None
    history: list[tuple[datetime, int]]
    gate: GateRun | None = None
    frozen: Freeze | None = None


class RetireInput(Contract):
    """What migration and cleanup share: the old version to retire, how often to look, and what to tell."""

    workflow_name: str
    from_version: VersionInfo
    poll_interval_s: float = Field(default=2.0, gt=0)
    continue_as_new_after: int = Field(default=2000, ge=10)
    step_timeout_s: float = Field(default=DEFAULT_STEP_TIMEOUT_S, gt=0)
    report: DeploymentFacts | None = Field(
        default=None, description="the deployment its notifications (migration_done, retired) tell of"
    )
    ended: Phase | None = Field(
        default=None, description="a cleanup: how that deployment ended (it runs after the end, and says so)"
    )
    retire_delay_s: float = Field(default=0, ge=0, description="wait this long before deleting the old workers")


class MigrationInput(RetireInput):
    to_version: VersionInfo
    batch_size: int = Field(default=MIGRATION_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE, description="runs per page")
    concurrency: int = Field(default=MIGRATION_CONCURRENCY, ge=1)
    full_sweep_every_s: float = Field(
        default=1800.0, gt=0, description="a full sweep at least this often while the routing stays the same"
    )
    recent_pause_max_s: float = Field(default=60.0, gt=0, description="the longest pause between recent sweeps")
    retire: bool = Field(
        default=True,
        description="False: end once every workflow was signalled, keeping the old version (a roll-back's "
        "migrate-back)",
    )
    canary: CanaryOptions | None = Field(default=None, description="move a cohort first, soak, then the rest")

    @property
    def pacing(self) -> SweepPacing:
        """How often it looks at the old queue and sweeps it (``planner.sweep.next_sweep``)."""
        return SweepPacing(
            poll_s=self.poll_interval_s,
            full_sweep_every_s=self.full_sweep_every_s,
            recent_pause_max_s=self.recent_pause_max_s,
        )


class DrainState(State):
    signalled_total: int = 0
    eligible: int = 0
    running_on_old_queue: int | None = None
    iterations: int = 0
    retired: bool = False
    deleted_workers: list[str] = Field(default_factory=list)
    kept_workers: str | None = Field(default=None, description="why the old version's workers were kept")
    waiting_for: str | None = Field(default=None, description="what keeps the old version from being retired")
    failure: str | None = Field(default=None, description="the typed reason this workflow failed with")
    drained: bool = Field(default=False, description="the old queue is empty for good (migration_done was told)")
    outbox: list[Notification] = Field(default_factory=list, description="notifications not published yet")
    ready_since: datetime | None = Field(
        default=None, description="since when the retire rule allows deleting the old workers (the retire delay)"
    )
    retire_at: datetime | None = Field(default=None, description="the retire delay's countdown: deletion at")


class MigrationState(DrainState):
    """The migration's state: the drain's, and its sweeps (``diachronic.ci.planner.sweep``), all bounded."""

    sweep: Sweep | None = Field(default=None, description="the sweep in progress, with its cursor")
    sweeps: SweepLog = Field(default_factory=SweepLog)
    next_sweep_at: datetime | None = Field(default=None, description="when the next sweep runs if nothing changes")
    pacing: str | None = Field(default=None, description="why it sweeps or waits")
    canary: CanaryProgress | None = Field(default=None, description="the canary cohort (deploy --migrate-canary)")


class MigrationRun(Contract):
    input: MigrationInput
    state: MigrationState | None = None


class CleanupRun(Contract):
    input: RetireInput
    state: DrainState | None = None


class DrainResult(Contract):
    signalled: int
    deleted_workers: list[str]
    archived_flag: str | None = Field(description="None: the flag was archived before")
    kept_workers: str | None = Field(default=None, description="why the old version's workers were kept")
    handed_off: bool = Field(
        default=False, description="retiring waits for a deployment of the old version: a cleanup takes it over"
    )
    unpublished: list[Notification] = Field(default_factory=list, description="left for the CI to publish")


# ----------------------------------------------------------------------------------------------- CI status


class Phase(StrEnum):
    IDLE = "idle"  # nothing to do; the CI run completes
    PREPARING = "preparing"  # registering the version's flag, finding the previous version
    AWAITING_CONTINUE = "awaiting_continue"  # dark deploy: only isTest traffic until "continue"
    ROLLING_OUT = "rolling_out"  # raising the share of new starts (migration runs alongside)
    MIGRATING = "migrating"  # rollout over; waiting for old workflows to leave the old queue
    COMPLETED = "completed"  # the new version routes 100 %; the previous one retired (or handed to cleanup)
    FAILED = "failed"  # a step could not succeed (or the deploy was refused): ``end.reason`` names why
    CANCELLED = "cancelled"  # a human stopped the automation; flags stay as they are
    ABORTED = "aborted"  # new starts routed back to the previous version, migration stopped
    STOPPED = "stopped"  # a human edited the flag: the rollout stepped aside (migration followed the flag)
    DUPLICATE = "duplicate"  # the version already is the newest live version: nothing was done


FINAL_PHASES = frozenset(
    {Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED, Phase.ABORTED, Phase.STOPPED, Phase.DUPLICATE}
)


class Actor(StrEnum):
    """Who ended a deployment before the automation finished it."""

    HUMAN = "human"  # a control: the CLI, the dashboard, an update
    GATES = "gates"  # the gate workflow or the health analysis (docs/gates.md)


class DeploymentEnd(Contract):
    """How a deployment ended, beyond its final phase: the typed reason, what it says, and who ended it."""

    reason: str | None = Field(default=None, description="a stable name: FlagStoreError, StepTimedOut, ...")
    detail: str | None = None
    by: Actor | None = None
    note: str | None = Field(default=None, description="the reason given with the control")

    @property
    def text(self) -> str | None:
        """``Reason: detail`` (what ``status`` shows as the last error when there is a typed reason)."""
        if self.reason:
            return f"{self.reason}: {self.detail}" if self.detail else self.reason
        return self.detail


class ControlRecord(Contract):
    """A control the deployment accepted, with the reason given."""

    control: Control
    reason: str | None = None
    at: datetime


class DeployOptions(Contract):
    """What ``diachronic deploy`` adds to the wire payload (all optional)."""

    steps: Schedule | None = None
    poll_interval_s: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE, description="migration: runs per page")
    continue_as_new_after: int | None = Field(default=None, ge=10, description="history events; tests force it low")
    step_timeout_s: float | None = Field(
        default=None, gt=0, description="how long one step may keep failing (default 1 h)"
    )
    redeploy: bool = Field(
        default=False,
        description="deploy even if the version already is the newest live version (a human's command, e.g. to "
        "finish a deployment that failed); a redelivered event never sets it",
    )
    ready_timeout_s: float | None = Field(
        default=None, gt=0, description="how long to wait for a worker on the new version's task queue (10 min)"
    )
    gate: GateOptions | None = None
    health: HealthThresholds | None = Field(default=None, description="the health analysis (defaults when absent)")
    migrate_back: bool = Field(
        default=False,
        description="a roll-back by redeploy moves workflows back when the old code declares it accepts their state",
    )
    force_reason: str | None = Field(
        default=None, min_length=1, max_length=500, description="go through a freeze, for this reason (recorded)"
    )
    retire_delay_s: float | None = Field(
        default=None, ge=0, description="once the old queue drained, wait this long before deleting the old workers"
    )
    canary: CanaryOptions | None = Field(default=None, description="the migration moves a cohort first, then the rest")


class DeployRequest(Contract):
    event: DeployEvent
    options: DeployOptions = Field(default_factory=DeployOptions)


class Deployment(State):
    request: DeployRequest
    phase: Phase = Phase.PREPARING
    from_version: VersionInfo | None = None
    to_version: VersionInfo | None = None
    rollout: RolloutResult | None = None
    migration: DrainResult | None = None
    cleanup_workflow_id: str | None = None
    end: DeploymentEnd | None = None
    overrode_freeze: Freeze | None = Field(default=None, description="the freeze it was forced through")
    controls: list[ControlRecord] = Field(default_factory=list, description="the controls it accepted (bounded)")
    gates: GatesRecord = Field(default_factory=GatesRecord)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class CIState(State):
    workflow_name: str | None = None
    queue: list[DeployRequest] = Field(default_factory=list)
    current: Deployment | None = None
    history: list[Deployment] = Field(default_factory=list)
    failures: list[str] = Field(
        default_factory=list, description="why deployments of this run failed (bounded): the run then fails"
    )
    failed: int = Field(default=0, description="deployments of this run that failed, across continue-as-new")
    last_ignored: str | None = Field(default=None, description="why the last deploy event was ignored")
    ignored: int = 0
    outbox: list[Notification] = Field(
        default_factory=list, description="notifications decided and not published yet (bounded: ci.outbox.LIMIT)"
    )
    frozen: Freeze | None = Field(default=None, description="the freeze the next deployment waits for")
    deliveries: list[str] = Field(
        default_factory=list, description="GitHub delivery ids taken recently (bounded: planner.deploy.MAX_DELIVERIES)"
    )


class CIInput(Contract):
    state: CIState | None = None
    continue_as_new_after: int = Field(default=5000, ge=10)


class CIResult(Contract):
    workflow_name: str | None
    deployments: list[Deployment]


class ControlInput(Contract):
    """Argument of the control updates; ``reason`` is recorded in the status."""

    reason: str | None = None


class RollbackInput(ControlInput):
    """Argument of ``rollback``: at once, or stepped (the previous version's share rising to 100 %)."""

    steps: Schedule | None = None
    migrate_back: bool = False


class DeployAck(Contract):
    """Answer to a deploy: ``accept`` with its place in the queue, or why it was recognised as a duplicate."""

    decision: str
    position: int | None = None


class MigrationCounts(Contract):
    eligible: int
    signalled: int
    on_old_queue: int | None
    sweeping: str | None = Field(default=None, description="the kind of the sweep in progress (full, recent)")
    swept_rows: int = Field(default=0, description="rows the sweep in progress has read")
    resent: int = Field(default=0, description="signals an earlier sweep may have sent already (Temporal drops them)")
    sweeps: int = 0
    rows_read: int = Field(default=0, description="visibility rows read by every sweep")
    next_sweep_at: datetime | None = Field(default=None, description="when the next sweep runs if nothing changes")
    pacing: str | None = Field(default=None, description="why the migration sweeps or waits")
    canary: CanaryProgress | None = Field(default=None, description="the canary cohort: cohort, soak, rest")


class CIStatus(Contract):
    """What ``diachronic status --json`` prints for one workflow."""

    workflow_name: str
    phase: Phase
    from_version: VersionInfo | None
    to_version: VersionInfo | None
    rollout_percent: int | None
    next_step_at: datetime | None
    steps: list[RolloutStep]
    paused: bool
    migration: MigrationCounts | None
    queued: list[DeployEvent]
    last_error: str | None
    end: DeploymentEnd | None = None
    frozen: Freeze | None = Field(default=None, description="the queued deployments wait for this freeze to lift")
    rollout_frozen: Freeze | None = Field(
        default=None, description="the rollout holds its current step until this freeze lifts"
    )
    non_migratory: bool = False
    cleanup_workflow_id: str | None = None
    drain_workflow_id: str | None = Field(
        default=None, description="the workflow draining and retiring the previous version (migration or cleanup)"
    )
    retire_at: datetime | None = Field(
        default=None, description="the retire delay runs: the previous version's workers are deleted at this time"
    )
    rollout_history: list[tuple[datetime, int]] = Field(default_factory=list)
    recent: list[Deployment] = Field(default_factory=list)
    gates: GatesRecord | None = Field(default=None, description="readiness, gate runs, health numbers per step")
