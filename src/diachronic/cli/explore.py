"""``diachronic explore``: search for counter-examples to the safety invariants (docs/safety.md, "The explorer")."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from diachronic.cli import Context, app
from diachronic.simulation.explorer import Summary, Trial, explore


@app.command(name="explore")
def explore_command(
    ctx: typer.Context,
    seed: Annotated[
        int, typer.Option(envvar="DIACHRONIC_EXPLORE_SEED", help="Seed of every story: the same seed, the same stories")
    ] = 0,
    budget: Annotated[
        float,
        typer.Option(
            envvar="DIACHRONIC_EXPLORE_BUDGET", min=1.0, help="Wall seconds of playing stories (shrinking after)"
        ),
    ] = 600.0,
    sequences: Annotated[
        int | None,
        typer.Option(envvar="DIACHRONIC_EXPLORE_SEQUENCES", min=1, help="Stop after this many stories (default: none)"),
    ] = None,
    shrink_runs: Annotated[
        int,
        typer.Option(
            envvar="DIACHRONIC_EXPLORE_SHRINK_RUNS", min=0, help="Plays spent shrinking each counter-example (0: none)"
        ),
    ] = 40,
    model: Annotated[
        bool,
        typer.Option(
            "--model",
            envvar="DIACHRONIC_EXPLORE_MODEL",
            help="Play the stories against the model of the CI (the planner alone, far faster); a counter-example is "
            "then played on the real workflows to confirm it",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as one JSON object on the last line")] = False,
) -> None:
    """Play generated stories on the real CI workflows in virtual time, judging every step against the safety
    invariants; print each counter-example, shrunk, as a catalog scenario; exit 1 if any invariant broke."""
    c: Context = ctx.obj
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # injected failures are the point here, not news
        logging.getLogger("temporalio").setLevel(logging.CRITICAL)

    def progress(trial: Trial) -> None:
        if model and not trial.violations:
            return  # hundreds a second: only the counter-examples are news
        c.out.info(f"{trial.name}: {trial.played}/{len(trial.story)} actions played in {trial.wall_s:.1f} s")
        if trial.retried:
            c.out.warn(f"  retried after a test-server stall: {trial.retried}")
        for violation in trial.violations:
            c.out.warn(f"  {violation}")

    summary: Summary = c.run(
        explore(
            seed=seed, budget_s=budget, sequences=sequences, shrink_runs=shrink_runs, model=model, on_trial=progress
        )
    )
    if as_json:
        c.out.data(json.dumps(summary.as_json()))
    else:
        for finding in summary.findings:
            found, best = len(finding.found.story), len(finding.best.story)
            confirmed = {True: ", confirmed on the workflows", False: ", NOT confirmed on the workflows", None: ""}
            c.out.data(f"\n# {finding.invariant}: {found} actions shrunk to {best}{confirmed[finding.confirmed]}")
            c.out.data(finding.python())
        c.out.data(summary.line())
    if not summary.passed:
        c.out.abort(f"{len(summary.findings)} invariant(s) broken: {', '.join(f.invariant for f in summary.findings)}")
