"""``status`` (with ``--watch`` progress bars), ``flags`` and ``workers``: the read commands, each with ``--json``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from temporalio.client import Client

from diachronic.backends import open_flag_store, open_workers
from diachronic.ci import client as ci
from diachronic.ci.contracts import FINAL_PHASES, CIStatus, GateStage
from diachronic.cli import App, Context, app
from diachronic.cli.output import Output
from diachronic.cli.wait import TIMEOUT_OPTION, WAIT_OPTION, wait_and_exit, wait_timeout
from diachronic.flags.evaluation import general_percent
from diachronic.temporal import connect
from diachronic.workers.local import LocalWorkers


def describe(status: CIStatus) -> str:
    """One line a person reads: phase, versions, gates, percent, migration, health, next step, last error."""
    parts = [f"{status.workflow_name}: {status.phase.value}"]
    if status.to_version:
        origin = status.from_version.version_id if status.from_version else "(initial)"
        parts.append(f"{origin} -> {status.to_version.version_id}")
    parts += describe_gates(status)
    if status.rollout_percent is not None:
        parts.append(f"{status.rollout_percent}% of new starts" + (" (paused)" if status.paused else ""))
    if status.migration is not None:
        m = status.migration
        parts.append(
            f"migration: {m.signalled} signalled, {m.on_old_queue if m.on_old_queue is not None else '?'} on old queue"
        )
        if m.canary is not None:
            parts.append(m.canary.summary)
        if m.sweeping is not None:
            parts.append(f"{m.sweeping} sweep: {m.swept_rows} read")
        elif m.pacing:
            when = m.next_sweep_at and max((m.next_sweep_at - datetime.now(UTC)).total_seconds(), 0)
            parts.append(f"next sweep in {when:.0f} s ({m.pacing})" if when is not None else m.pacing)
    if status.next_step_at is not None:
        seconds = max((status.next_step_at - datetime.now(UTC)).total_seconds(), 0)
        parts.append(f"next step in {seconds:.0f} s")
    if status.rollout_frozen is not None:
        f = status.rollout_frozen
        parts.append(f"frozen until {f.until.isoformat()} ({f.reason}): the rollout holds its current step")
    if status.retire_at is not None:
        seconds = max((status.retire_at - datetime.now(UTC)).total_seconds(), 0)
        parts.append(f"retire delay: old workers deleted in {seconds:.0f} s")
    if status.frozen is not None:
        parts.append(
            f"frozen until {status.frozen.until.isoformat()} ({status.frozen.reason}): the next deployment waits"
        )
    if status.queued:
        parts.append(f"queued: {', '.join(e.version_id for e in status.queued)}")
    if status.last_error:
        parts.append(f"last error: {status.last_error}")
    return " | ".join(parts)


def describe_gates(status: CIStatus) -> list[str]:
    """What the gates say (docs/gates.md): waiting for workers, the gate running, the health numbers of this step."""
    gates = status.gates
    if gates is None or (status.phase in FINAL_PHASES and gates.breach is None):
        return []
    parts = []
    if gates.waiting_for and gates.stage is GateStage.WAITING_FOR_WORKERS:
        parts.append(gates.waiting_for)
    running = [run for run in gates.gate_runs if run.passed is None]
    if running:
        parts.append(f"gate running ({running[-1].workflow_id})")
    if gates.health:
        last = gates.health[-1]
        parts.append(
            f"health: new {last.new.failures}/{last.new.closed} failed"
            + (f", {last.new.task_problems} stuck" if last.new.task_problems else "")
            + f"; previous {last.old.failures}/{last.old.closed}"
        )
    return parts


def render_progress(statuses: list[CIStatus]) -> Group:
    """Progress bars of the rollout and the migration, one block per workflow."""
    rows: list[RenderableType] = []
    for status in statuses:
        bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"))
        bars.add_task(
            "rollout  ", total=100, completed=status.rollout_percent or 0, detail=f"{status.rollout_percent or 0}%"
        )
        if status.migration is not None:
            m = status.migration
            left = m.on_old_queue or 0
            total = max(m.signalled + left, 1)
            bars.add_task("migration", total=total, completed=total - left, detail=f"{total - left}/{total} moved")
        rows.extend([describe(status), bars])
    return Group(*rows)


async def _statuses(client: Client, workflow: str | None) -> list[CIStatus]:
    names = [workflow] if workflow else await ci.workflow_names(client)
    return [await ci.status(client, name) for name in names]


async def _watch(out: Output, client: Client, workflow: str | None) -> None:
    def finished(statuses: list[CIStatus]) -> bool:
        return all(s.phase in FINAL_PHASES and not s.queued for s in statuses)

    if not out.interactive:
        last = ""
        while True:
            statuses = await _statuses(client, workflow)
            lines = "\n".join(describe(s) for s in statuses)
            if lines != last:
                out.info(lines)
                last = lines
            if finished(statuses):
                return
            await asyncio.sleep(0.5)
    with Live(console=out.err, refresh_per_second=4) as live:
        while True:
            statuses = await _statuses(client, workflow)
            live.update(render_progress(statuses))
            if finished(statuses):
                return
            await asyncio.sleep(0.5)


@app.command()
def status(
    ctx: typer.Context,
    workflow: Annotated[str | None, typer.Argument(help="Workflow name (default: every workflow)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Follow progress until the deployment ends")] = False,
    wait: Annotated[bool, WAIT_OPTION] = False,
    timeout: Annotated[str | None, TIMEOUT_OPTION] = None,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            envvar="DIACHRONIC_WAIT_VERSION",
            help="With --wait: the deployment of this version (default: the one running, else the next queued)",
        ),
    ] = None,
) -> None:
    """Show the deployment status: phase, versions, percent, migration, queue, last error.

    With --wait, block until the deployment ends; the exit code says how (docs/pipeline.md)."""
    c: Context = ctx.obj
    if wait:
        if workflow is None:
            c.out.abort("--wait needs a WORKFLOW")
        wait_and_exit(c, workflow, version_id=version, timeout_s=wait_timeout(c, timeout), as_json=as_json)

    async def run() -> list[CIStatus]:
        client = await connect(c.settings)
        if watch:
            await _watch(c.out, client, workflow)
        return await _statuses(client, workflow)

    statuses = c.run(run())
    if as_json:
        c.out.json(
            statuses[0] if workflow else {"workflows": [s.model_dump(mode="json", by_alias=True) for s in statuses]}
        )
    elif not watch:
        for line in (describe(s) for s in statuses) if statuses else ["no deployments yet"]:
            c.out.data(line)


flags_app = App(help="Read and edit version flags (the embedded store; Unleash has its own UI).")
app.add_typer(flags_app, name="flags")


@flags_app.command("list")
def flags_list(
    ctx: typer.Context,
    workflow: Annotated[str, typer.Argument(help="Workflow name")],
    archived: Annotated[bool, typer.Option("--archived", help="Include archived flags")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout")] = False,
) -> None:
    """List a workflow's version flags, newest first."""
    c: Context = ctx.obj

    async def run() -> list:  # type: ignore[type-arg]
        store = open_flag_store(c.settings)
        try:
            return await store.list_version_flags(workflow, include_archived=archived)
        finally:
            await store.close()

    flags = c.run(run())
    if as_json:
        c.out.json(flags)
        return
    table = Table("seq", "version", "task queue", "general %", "enabled", "archived")
    for flag in flags:
        percent = general_percent(flag)
        table.add_row(
            str(flag.info.seq_id),
            flag.info.version_id,
            flag.info.task_queue,
            "-" if percent is None else str(percent),
            str(flag.enabled),
            str(flag.archived),
        )
    c.out.out.print(table)


@flags_app.command("set-percent")
def flags_set_percent(
    ctx: typer.Context,
    flag: Annotated[str, typer.Argument(help="Flag name (workflow.<wf>.seqId.<n>.version.<v>)")],
    percent: Annotated[int, typer.Argument(help="0..100")],
) -> None:
    """Set a flag's "All other traffic" percentage by hand (a running rollout steps aside)."""
    c: Context = ctx.obj

    async def run() -> None:
        store = open_flag_store(c.settings)
        try:
            await store.set_general_percent(flag, percent)
        finally:
            await store.close()

    c.run(run())
    c.out.success(f"{flag}: All other traffic = {percent}%")


@app.command()
def workers(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout")] = False,
) -> None:
    """List the local worker processes diachronic started."""
    c: Context = ctx.obj
    backend = open_workers(c.settings)
    if not isinstance(backend, LocalWorkers):
        c.out.abort("`workers` lists local worker processes; use kubectl for Kubernetes")
    found = c.run(backend.list_all())
    if as_json:
        c.out.json(found)
        return
    for w in found:
        c.out.data(f"{w.name} pid={w.pid} queue={w.task_queue} running={w.running}")
