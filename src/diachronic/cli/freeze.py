"""``freeze``, ``unfreeze`` and ``freezes``: hold new deployments and rollout steps (docs/pipeline.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from diachronic.ci.freeze import lift_freeze, list_freezes, set_freeze
from diachronic.ci.planner.freeze import ALL, Freeze, active_freeze, window_freezes
from diachronic.cli import Context, app
from diachronic.signaler.instructions import parse_duration
from diachronic.temporal import connect

WORKFLOW = typer.Argument(help="Workflow name (or --all)", show_default=False)
ALL_OPTION = typer.Option("--all", envvar="DIACHRONIC_FREEZE_ALL", help="Every workflow, present and future")


def parse_until(text: str, now: datetime) -> datetime:
    """An ISO time (``2026-12-01T18:00Z``; without a zone: this machine's) or a delay from now (``+2h``)."""
    if text.strip().startswith("+"):
        return now + parse_duration(text.strip()[1:])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO time (2026-12-01T18:00Z) nor a delay (+2h)") from None
    return (moment if moment.tzinfo else moment.astimezone()).astimezone(UTC)


def _scope(c: Context, workflow: str | None, every: bool) -> str:
    if (workflow is None) == (not every):
        c.out.abort("name a WORKFLOW or give --all (not both)")
    return ALL if every else str(workflow)


def _describe(freeze: Freeze) -> str:
    what = "every workflow" if freeze.scope == ALL else freeze.scope
    return f"{what} frozen until {freeze.until.isoformat()} ({freeze.source}): {freeze.reason}"


@app.command()
def freeze(
    ctx: typer.Context,
    workflow: Annotated[str | None, WORKFLOW] = None,
    every: Annotated[bool, ALL_OPTION] = False,
    until: Annotated[
        str, typer.Option("--until", envvar="DIACHRONIC_FREEZE_UNTIL", help="ISO time or +DELAY (+2h, +30m)")
    ] = "",
    reason: Annotated[str, typer.Option("--reason", envvar="DIACHRONIC_FREEZE_REASON", help="Why (shown)")] = "",
) -> None:
    """Freeze deployments: new ones wait in the queue and running rollouts hold their step until T."""
    c: Context = ctx.obj
    scope = _scope(c, workflow, every)
    if not until or not reason.strip():
        c.out.abort("a freeze needs --until T and --reason R")
    try:
        moment = parse_until(until, datetime.now(UTC))
    except ValueError as error:
        c.out.abort(f"invalid --until: {error}")

    async def run() -> Freeze:
        return await set_freeze(await connect(c.settings), c.settings.ci_task_queue, scope, moment, reason.strip())

    c.out.success(_describe(c.run(run())))


@app.command()
def unfreeze(
    ctx: typer.Context,
    workflow: Annotated[str | None, WORKFLOW] = None,
    every: Annotated[bool, ALL_OPTION] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded)")] = None,
) -> None:
    """Lift a freeze set by `diachronic freeze` (recurring windows of the configuration stay)."""
    c: Context = ctx.obj
    scope = _scope(c, workflow, every)

    async def run() -> Freeze:
        return await lift_freeze(await connect(c.settings), scope, reason)

    lifted = c.run(run())
    c.out.success(f"lifted: {_describe(lifted)}")


@app.command()
def freezes(
    ctx: typer.Context,
    workflow: Annotated[str | None, typer.Argument(help="Only what applies to this workflow")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout")] = False,
) -> None:
    """List the freezes in force: set by command, and recurring windows of the configuration in force now."""
    c: Context = ctx.obj

    async def run() -> list[Freeze]:
        return await list_freezes(await connect(c.settings))

    now = datetime.now(UTC)
    stored = c.run(run())
    if workflow is None:
        found = stored + window_freezes(now, c.settings.freeze_windows)
    else:
        in_force = active_freeze(now, workflow, stored, c.settings.freeze_windows)
        found = [in_force] if in_force else []
    if as_json:
        c.out.json(found)
    else:
        for line in [_describe(f) for f in found] or ["nothing is frozen"]:
            c.out.data(line)
