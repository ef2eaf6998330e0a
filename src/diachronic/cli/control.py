"""``deploy``, the controls (``continue``, ``cancel``, ``pause``, ``resume``, ``promote``, ``abort``) and ``start``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from diachronic.backends import open_flag_store, open_workers
from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployAck, DeployOptions
from diachronic.ci.planning import default_steps, format_steps, parse_steps, plan_deployment
from diachronic.cli import Context, app
from diachronic.contracts import DeployEvent
from diachronic.errors import DiachronicError
from diachronic.flags import VersionFlag
from diachronic.signaler import start_routed
from diachronic.temporal import connect, wait_for_poller
from diachronic.versions import previous_version, task_queue
from diachronic.workers.local import LocalWorkers


def _event(ctx: Context, **fields: Any) -> DeployEvent:
    try:
        return DeployEvent.model_validate(fields)
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in error.errors())
        ctx.out.abort(f"invalid deployment: {problems}")


@app.command()
def deploy(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name (= workflow type)")],
    version: Annotated[str, typer.Argument(help="Version id (e.g. the short git sha)")],
    sha: Annotated[str | None, typer.Option(help="Full commit sha (default: the version id)")] = None,
    environment: Annotated[str, typer.Option(help="Deployment environment")] = "development",
    dark: Annotated[bool, typer.Option("--dark", help="Only isTest traffic until `diachronic continue`")] = False,
    non_migratory: Annotated[
        bool, typer.Option("--non-migratory", help="Old workflows finish where they are (cleanup waits)")
    ] = False,
    steps: Annotated[
        str | None, typer.Option(help='Rollout schedule "P@D,...": wait D, then route P %. Default 10 % every 60 s')
    ] = None,
    poll: Annotated[float | None, typer.Option(help="Seconds between flag and queue checks (default 1-2 s)")] = None,
    worker_cmd: Annotated[
        str | None, typer.Option("--worker-cmd", help="Start CMD as this version's local worker first")
    ] = None,
) -> None:
    """Deploy VERSION of WORKFLOW: register its flag, roll out, migrate (or clean up) the previous version."""
    c: Context = ctx.obj
    event = _event(
        c,
        workflow_name=workflow,
        version_id=version,
        sha=sha or version,
        environment=environment,
        event_time=datetime.now(UTC),
        is_dark_deploy=dark,
        is_non_migratory=non_migratory,
    )
    try:
        options = DeployOptions(steps=parse_steps(steps) if steps else None, poll_interval_s=poll)
    except (DiachronicError, ValidationError) as error:
        c.out.abort(f"invalid --steps/--poll: {error}")

    async def run() -> tuple[DeployAck, list[VersionFlag] | None]:
        client = await connect(c.settings)
        if worker_cmd:
            workers = open_workers(c.settings)
            if not isinstance(workers, LocalWorkers):
                c.out.abort("--worker-cmd needs the local worker backend")
            queue = task_queue(workflow, version)
            c.out.info(f"starting worker for {queue}: {worker_cmd}")
            await workers.start(
                workflow,
                version,
                worker_cmd,
                env={
                    "DIACHRONIC_TEMPORAL_ADDRESS": c.settings.temporal_address,
                    "DIACHRONIC_TEMPORAL_NAMESPACE": c.settings.temporal_namespace,
                },
            )
            await wait_for_poller(client, queue)
            c.out.info(f"worker polls {queue}")
        flags = await _read_flags(c, workflow)  # before the deployment registers its own flag
        return await ci.deploy(client, c.settings.ci_task_queue, event, options), flags

    ack, flags = c.run(run())
    if ack.position is None:
        c.out.warn(f"{workflow} {version}: {ack.decision}, nothing new queued")
    else:
        c.out.success(
            f"{workflow} {version} queued (position {ack.position}): {what_will_happen(event, options, ack, flags)}"
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
    plan = plan_deployment(previous_version(flags, event.version_id))
    if plan.from_version is None:
        return f"{dark}the first version of {event.workflow_name}: 100% of new starts go to it at once"
    return f"{dark}{rollout} from {plan.from_version.version_id}"


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


_control("continue", "Continue a dark deploy: start the rollout.")
_control("cancel", "Stop the deployment's automation; flags stay as they are.")
_control("pause", "Hold the rollout at its current percentage.")
_control("resume", "Resume a paused rollout (the current step waits its full time again).")
_control("promote", "Route 100 % to the new version now.")
_control("abort", "Route new starts back to the previous version and stop migrating.")


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
