"""``diachronic doctor``: one line per check of every configured connection; exit 1 when any fails."""

from __future__ import annotations

from typing import Annotated

import typer

from diachronic.cli import Context, app
from diachronic.doctor import run_checks


@app.command()
def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout")] = False,
) -> None:
    """Check Temporal (reachable, namespace, CI worker), the flag store and the worker backend; say what to fix."""
    c: Context = ctx.obj
    findings = c.run(run_checks(c.settings))
    healthy = all(f.ok for f in findings)
    if as_json:
        c.out.json({"ok": healthy, "checks": [f.model_dump(mode="json", by_alias=True) for f in findings]})
    else:
        for finding in findings:
            c.out.data(f"{'ok  ' if finding.ok else 'FAIL'} {finding.check}: {finding.detail}")
    if not healthy:
        raise typer.Exit(1)
