"""``deploy``, the controls (``continue``, ``cancel``, ``pause``, ``resume``, ``promote``, ``abort``), ``rollback``
and ``start``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from diachronic.backends import open_flag_store, open_workers
from diachronic.ci import client as ci
from diachronic.ci.contracts import (
    CANARY_QUERY,
    DEFAULT_CANARY_SOAK_S,
    DEFAULT_GATE_TIMEOUT_S,
    CanaryOptions,
    Control,
    DeployAck,
    DeployOptions,
    GateOptions,
    HealthThresholds,
)
from diachronic.ci.planner.canary import parse_canary
from diachronic.ci.planner.deployment import DeploymentSnapshot, StartVerdict, plan_start
from diachronic.ci.planner.schedule import default_steps, format_steps, parse_steps
from diachronic.cli import Context, app
from diachronic.cli.wait import TIMEOUT_OPTION, WAIT_OPTION, duration_s, wait_and_exit, wait_timeout
from diachronic.contracts import DeployEvent
from diachronic.errors import DiachronicError
from diachronic.flags import VersionFlag
from diachronic.signaler import start_routed
from diachronic.temporal import connect, count_narrowed, resolve_connection, visibility_string, wait_for_poller
from diachronic.versions import task_queue
from diachronic.workers.local import LocalWorkers


def _event(ctx: Context, **fields: Any) -> DeployEvent:
    try:
        return DeployEvent.model_validate(fields)
    except ValidationError as error:
        ctx.out.abort(f"invalid deployment: {_problems(error)}")


@app.command()
def deploy(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name (= workflow type)")],
    version: Annotated[str, typer.Argument(help="Version id (e.g. the short git sha)")],
    sha: Annotated[str | None, typer.Option(help="Full commit sha (default: the version id)")] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            help="Deployment environment; the CI refuses another than its own [default: DIACHRONIC_ENVIRONMENT]"
        ),
    ] = None,
    dark: Annotated[bool, typer.Option("--dark", help="Only isTest traffic until `diachronic continue`")] = False,
    non_migratory: Annotated[
        bool, typer.Option("--non-migratory", help="Old workflows finish where they are (cleanup waits)")
    ] = False,
    redeploy: Annotated[
        bool,
        typer.Option(
            "--redeploy", help="Deploy even if VERSION already is the newest live version (e.g. after a failure)"
        ),
    ] = False,
    steps: Annotated[
        str | None, typer.Option(help='Rollout schedule "P@D,...": wait D, then route P %. Default 10 % every 60 s')
    ] = None,
    poll: Annotated[float | None, typer.Option(help="Seconds between flag and queue checks (default 1-2 s)")] = None,
    worker_cmd: Annotated[
        str | None, typer.Option("--worker-cmd", help="Start CMD as this version's local worker first")
    ] = None,
    ready_timeout: Annotated[
        str | None,
        typer.Option(
            "--ready-timeout",
            envvar="DIACHRONIC_READY_TIMEOUT",
            help="How long to wait for a worker to poll VERSION's task queue before any traffic (30s, 10m) "
            "[default: 10m]; then the deployment fails with WorkersNotReady",
        ),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            envvar="DIACHRONIC_GATE",
            help="Workflow type of a gate run on VERSION's task queue before any traffic; its failure aborts "
            "(docs/gates.md)",
        ),
    ] = None,
    gate_input: Annotated[
        str | None, typer.Option("--gate-input", envvar="DIACHRONIC_GATE_INPUT", help="JSON argument of the gate")
    ] = None,
    gate_timeout: Annotated[
        str | None,
        typer.Option(
            "--gate-timeout", envvar="DIACHRONIC_GATE_TIMEOUT", help="A gate running longer fails [default: 10m]"
        ),
    ] = None,
    gate_every_step: Annotated[
        bool,
        typer.Option(
            "--gate-every-step", envvar="DIACHRONIC_GATE_EVERY_STEP", help="Run the gate before every rollout step"
        ),
    ] = False,
    max_failure_rate: Annotated[
        float | None,
        typer.Option(
            "--max-failure-rate",
            envvar="DIACHRONIC_MAX_FAILURE_RATE",
            help="Abort when more of VERSION's closed runs fail (0..1) than this and than the previous version's "
            "[default: 0.2]",
        ),
    ] = None,
    min_sample: Annotated[
        int | None,
        typer.Option(
            "--min-sample",
            envvar="DIACHRONIC_MIN_SAMPLE",
            help="Closed runs of VERSION before its failure rate is judged [default: 5]",
        ),
    ] = None,
    migrate_back: Annotated[
        bool,
        typer.Option(
            "--migrate-back",
            envvar="DIACHRONIC_MIGRATE_BACK",
            help="A roll-back by redeploy moves workflows back when VERSION's code accepts their state",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", envvar="DIACHRONIC_FORCE", help="Go through a freeze (needs --reason; recorded)")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", envvar="DIACHRONIC_FORCE_REASON", help="Why --force (recorded)")
    ] = None,
    retire_delay: Annotated[
        str | None,
        typer.Option(
            "--retire-delay",
            envvar="DIACHRONIC_RETIRE_DELAY",
            help="Once the old queue drained, keep the old workers this long (30s, 10m, 2h; a roll-back within it "
            "finds them running) [default: 0]",
        ),
    ] = None,
    migrate_canary: Annotated[
        str | None,
        typer.Option(
            "--migrate-canary",
            envvar="DIACHRONIC_MIGRATE_CANARY",
            help="Migrate a cohort first (N workflows, or P% of them), watch it for --canary-soak, then the rest; "
            "a cohort member failing on VERSION aborts (docs/gates.md)",
        ),
    ] = None,
    canary_query: Annotated[
        str | None,
        typer.Option(
            "--canary-query",
            envvar="DIACHRONIC_CANARY_QUERY",
            help='A visibility query the cohort must match too (e.g. WorkflowId STARTS_WITH "trial-")',
        ),
    ] = None,
    canary_soak: Annotated[
        str | None,
        typer.Option(
            "--canary-soak",
            envvar="DIACHRONIC_CANARY_SOAK",
            help="How long the cohort runs on VERSION before the rest moves (30s, 10m) [default: 5m]",
        ),
    ] = None,
    wait: Annotated[bool, WAIT_OPTION] = False,
    timeout: Annotated[str | None, TIMEOUT_OPTION] = None,
) -> None:
    """Deploy VERSION of WORKFLOW: wait for its workers, pass its gate, register its flag, roll out while the health
    analysis watches, migrate (or clean up) the previous version. A version live within the last hour goes back at
    once (a roll-back by redeploy, docs/gates.md).

    With --wait, block until this deployment ends; the exit code says how (docs/pipeline.md)."""
    c: Context = ctx.obj
    event = _event(
        c,
        workflow_name=workflow,
        version_id=version,
        sha=sha or version,
        environment=environment or c.settings.environment,
        event_time=datetime.now(UTC),
        is_dark_deploy=dark,
        is_non_migratory=non_migratory,
    )
    try:
        if force and not (reason or "").strip():
            c.out.abort("--force needs --reason: why this deployment goes through a freeze (it is recorded)")
        options = DeployOptions(
            steps=parse_steps(steps) if steps else None,
            poll_interval_s=poll,
            force_reason=reason.strip() if force and reason else None,
            redeploy=redeploy,
            ready_timeout_s=duration_s(c, ready_timeout, "--ready-timeout"),
            gate=_gate(c, gate, gate_input, duration_s(c, gate_timeout, "--gate-timeout"), gate_every_step),
            health=_health(max_failure_rate, min_sample),
            migrate_back=migrate_back,
            retire_delay_s=duration_s(c, retire_delay, "--retire-delay"),
            canary=_canary(c, migrate_canary, canary_query, duration_s(c, canary_soak, "--canary-soak"), non_migratory),
        )
    except (DiachronicError, ValidationError) as error:
        c.out.abort(f"invalid deploy options: {_problems(error)}")

    async def run() -> tuple[DeployAck, list[VersionFlag] | None]:
        client = await connect(c.settings)
        if options.canary is not None and options.canary.query is not None:  # the server judges it before anything
            await count_narrowed(
                client, f"WorkflowType={visibility_string(workflow)}", options.canary.query, CANARY_QUERY
            )
        if worker_cmd:
            workers = open_workers(c.settings)
            if not isinstance(workers, LocalWorkers):
                c.out.abort("--worker-cmd needs the local worker backend")
            queue = task_queue(workflow, version)
            c.out.info(f"starting worker for {queue}: {worker_cmd}")
            # The worker reaches Temporal exactly as we do (address, namespace, TLS, API key).
            await workers.start(workflow, version, worker_cmd, env=resolve_connection(c.settings).environment())
            await wait_for_poller(client, queue)
            c.out.info(f"worker polls {queue}")
        flags = await _read_flags(c, workflow)  # before the deployment registers its own flag
        return await ci.deploy(client, c.settings.ci_task_queue, event, options), flags

    timeout_s = wait_timeout(c, timeout)
    ack, flags = c.run(run())
    if ack.position is None:
        c.out.warn(f"{workflow} {version}: {ack.decision}, nothing new queued")
    else:
        c.out.success(
            f"{workflow} {version} queued (position {ack.position}): {what_will_happen(event, options, ack, flags)}"
        )
    if wait:
        # A duplicate follows the deployment of this version already queued or running.
        event_time = event.event_time if ack.position is not None else None
        wait_and_exit(c, workflow, version_id=version, event_time=event_time, timeout_s=timeout_s)


def _gate(
    c: Context, workflow_type: str | None, text: str | None, timeout_s: float | None, every_step: bool
) -> GateOptions | None:
    if workflow_type is None:
        if text is not None or timeout_s is not None or every_step:
            c.out.abort("--gate-input, --gate-timeout and --gate-every-step need --gate WORKFLOW_TYPE")
        return None
    try:
        argument = json.loads(text) if text is not None else None
    except json.JSONDecodeError as error:
        c.out.abort(f"--gate-input is not valid JSON: {error}")
    return GateOptions(
        workflow_type=workflow_type,
        input=argument,
        timeout_s=timeout_s or DEFAULT_GATE_TIMEOUT_S,
        every_step=every_step,
    )


def _canary(
    c: Context, text: str | None, query: str | None, soak_s: float | None, non_migratory: bool
) -> CanaryOptions | None:
    if text is None:
        if query is not None or soak_s is not None:
            c.out.abort("--canary-query and --canary-soak need --migrate-canary N|P%")
        return None
    if non_migratory:
        c.out.abort("--migrate-canary moves a cohort of the running workflows: --non-migratory moves none")
    size, percent = parse_canary(text)
    return CanaryOptions(
        size=size, percent=percent, query=query, soak_s=DEFAULT_CANARY_SOAK_S if soak_s is None else soak_s
    )


def _health(max_failure_rate: float | None, min_sample: int | None) -> HealthThresholds | None:
    given = {"max_failure_rate": max_failure_rate, "min_sample": min_sample}
    return HealthThresholds(**{k: v for k, v in given.items() if v is not None}) if any(given.values()) else None


def _problems(error: DiachronicError | ValidationError) -> str:
    if isinstance(error, DiachronicError):
        return error.message
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}" for e in error.errors()
    )


async def _read_flags(c: Context, workflow: str) -> list[VersionFlag] | None:
    """The workflow's version flags, to say what the deployment will do; None when this command cannot read them."""
    try:
        store = open_flag_store(c.settings)
        try:
            return await store.list_version_flags(workflow)
        finally:
            await store.close()
    except DiachronicError as error:
        logging.getLogger(__name__).info("cannot read the flags of %s: %s", workflow, error.message)
        return None


def what_will_happen(
    event: DeployEvent, options: DeployOptions, ack: DeployAck, flags: list[VersionFlag] | None
) -> str:
    """What the CI will do with this deployment, in the words of ``status``, from the flags it will read first."""
    dark = "dark deploy (only isTest traffic until `diachronic continue`), then " if event.is_dark_deploy else ""
    rollout = f"rollout, schedule {format_steps(options.steps or default_steps())}"
    if ack.position is not None and ack.position > 1:
        return f"after the {ack.position - 1} deployment(s) queued before it: {dark}{rollout}"
    if flags is None:
        return f"{dark}100% of new starts at once if it is the first version of {event.workflow_name}, else {rollout}"
    # The CI checks its environment and the task queue's owners too: those refusals are its to say (in status).
    snapshot = DeploymentSnapshot(event, tuple(flags), event.environment, redeploy=options.redeploy)
    start = plan_start(snapshot)
    if start.verdict is StartVerdict.DUPLICATE:
        return f"{event.version_id} already is the newest live version: nothing to deploy (--redeploy deploys it again)"
    if start.previous is None:
        return f"{dark}the first version of {event.workflow_name}: 100% of new starts go to it at once"
    return f"{dark}{rollout} from {start.previous.version_id}"


def _control(name: str, help_text: str) -> None:
    def command(
        ctx: typer.Context,
        workflow: Annotated[str, typer.Argument(help="Workflow name")],
        reason: Annotated[str | None, typer.Option(help="Why (recorded)")] = None,
    ) -> None:
        c: Context = ctx.obj

        async def run() -> str:
            return await ci.control(await connect(c.settings), workflow, name, reason)

        c.out.success(f"{workflow}: {c.run(run())}")

    command.__doc__ = help_text
    app.command(name=name)(command)


for _each in Control:
    if _each is not Control.ROLLBACK:  # it takes options of its own: ``rollback`` below
        _control(_each.value, _each.help)


@app.command()
def rollback(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name")],
    steps: Annotated[
        str | None,
        typer.Option(
            envvar="DIACHRONIC_ROLLBACK_STEPS",
            help='Step back "P@D,...": wait D, then route P % back to the previous version (its share rises to '
            "100) [default: all at once]",
        ),
    ] = None,
    migrate_back: Annotated[
        bool,
        typer.Option(
            "--migrate-back",
            envvar="DIACHRONIC_MIGRATE_BACK",
            help="Move workflows back too, when the previous version's code declares it accepts their state",
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why (recorded)")] = None,
) -> None:
    """Route new starts back to the previous version and stop migrating (docs/gates.md).

    Workflows already moved stay on the new version unless --migrate-back is given and the previous version's code
    accepts their state. To go back after a deployment ended, deploy the previous version again: a version live
    within the last hour goes back at once."""
    c: Context = ctx.obj
    try:
        schedule = parse_steps(steps) if steps else None
    except DiachronicError as error:
        c.out.abort(f"invalid --steps: {error.message}")

    async def run() -> str:
        return await ci.rollback(
            await connect(c.settings), workflow, steps=schedule, migrate_back=migrate_back, reason=reason
        )

    c.out.success(f"{workflow}: {c.run(run())}")


@app.command()
def start(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name (= workflow type)")],
    workflow_id: Annotated[str, typer.Option("--id", help="Workflow id (decides the routing)")],
    input: Annotated[str | None, typer.Option("--input", help="JSON argument of the workflow")] = None,
    test: Annotated[bool, typer.Option("--test", help="Route as isTest traffic")] = False,
) -> None:
    """Start a workflow on the task queue the flags choose; prints id, run id and task queue."""
    c: Context = ctx.obj
    try:
        args = [json.loads(input)] if input is not None else []
    except json.JSONDecodeError as error:
        c.out.abort(f"--input is not valid JSON: {error}")

    async def run() -> Any:
        flags = open_flag_store(c.settings)
        try:
            return await start_routed(
                await connect(c.settings),
                flags,
                workflow_name=workflow,
                workflow_id=workflow_id,
                args=args,
                is_test=test,
            )
        finally:
            await flags.close()

    started = c.run(run())
    c.out.data(f"{started.workflow_id} {started.run_id} {started.task_queue}")
