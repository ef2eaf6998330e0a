"""``--wait`` and ``--timeout`` of ``deploy`` and ``status``: block until a deployment ends, exit with its code."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn

import typer

from diachronic.cli import Context
from diachronic.signaler.instructions import parse_duration
from diachronic.temporal import connect
from diachronic.waiting import EXIT_CODES, Ending, Located, wait_for_end

WAIT_OPTION = typer.Option(
    "--wait",
    envvar="DIACHRONIC_WAIT",
    help="Block until the deployment ends; exit 0 completed, 3 failed, 4 aborted, 5 cancelled, "
    "6 stopped by a human edit, 7 timeout",
)
TIMEOUT_OPTION = typer.Option(
    "--timeout",
    envvar="DIACHRONIC_WAIT_TIMEOUT",
    help="With --wait: give up after this long (30s, 10m, 2h; default: no limit); exit 7",
)


def wait_timeout(c: Context, text: str | None) -> float | None:
    """``--timeout`` in seconds."""
    return duration_s(c, text, "--timeout")


def duration_s(c: Context, text: str | None, option: str) -> float | None:
    """A duration option (``30s``, ``10m``, ``2h``; a bare number is seconds) in seconds."""
    if text is None:
        return None
    try:
        return parse_duration(text + "s" if text.strip().replace(".", "", 1).isdigit() else text).total_seconds()
    except ValueError as error:
        c.out.abort(f"invalid {option}: {error}")


def _describe(workflow: str, found: Located) -> str:
    version = found.event.version_id if found.event else "?"
    if found.where == "queued":
        return f"{workflow} {version}: queued (position {found.position})"
    phase = found.deployment.phase.value if found.deployment else found.where
    return f"{workflow} {version}: {phase}"


def wait_and_exit(
    c: Context,
    workflow: str,
    *,
    version_id: str | None,
    event_time: datetime | None = None,
    timeout_s: float | None,
    as_json: bool = False,
) -> NoReturn:
    async def run() -> tuple[Ending, Located]:
        return await wait_for_end(
            await connect(c.settings),
            workflow,
            version_id=version_id,
            event_time=event_time,
            timeout_s=timeout_s,
            progress=lambda found: c.out.info(_describe(workflow, found)),
            warn=c.out.warn,
        )

    ending, found = c.run(run())
    if as_json and found.deployment is not None:
        c.out.json(
            {
                "ending": ending.value,
                "exitCode": EXIT_CODES[ending],
                "deployment": found.deployment.model_dump(mode="json"),
            }
        )
    text = _describe(workflow, found)
    if ending is Ending.COMPLETED:
        c.out.success(text)
    elif ending is Ending.TIMEOUT:
        c.out.warn(f"{text}: still going after the --timeout (exit {EXIT_CODES[ending]}); the deployment goes on")
    else:
        end = found.deployment.end if found.deployment else None
        error = end.text if end is not None and end.text else ending.value
        c.out.err.print(f"{text}: {error} (exit {EXIT_CODES[ending]})", style="red")
    raise typer.Exit(EXIT_CODES[ending])
