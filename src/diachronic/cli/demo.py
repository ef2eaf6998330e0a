"""``diachronic demo``: the whole flow on this machine (see ``diachronic.demo``)."""

from __future__ import annotations

import typer

from diachronic.cli import Context, app


@app.command()
def demo(ctx: typer.Context) -> None:
    """Deploy v1 of the sample, start workflows, deploy v2 and watch it roll out, migrate and clean up."""
    from diachronic.demo import run_demo

    c: Context = ctx.obj
    c.run(run_demo(c.settings, c.out))
