"""``diachronic simulate``: the scenario catalog on the time-skipping Temporal server, every activity faked."""

from __future__ import annotations

import importlib
import json
import logging
from typing import Annotated

import typer
from rich.table import Table

from diachronic.cli import Context, app
from diachronic.simulation.fakes import FailurePolicy
from diachronic.simulation.runner import Outcome, Report, Scenario, run_catalog
from diachronic.simulation.scenarios import CATALOG, select


def virtual_time(seconds: float) -> str:
    """``3h04m10s``: how much virtual time a scenario covered."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def load_catalog(spec: str) -> list[Scenario]:
    """``MODULE[:NAME]``: a list of scenarios in your own module (``NAME`` defaults to ``SCENARIOS``)."""
    module_name, _, attribute = spec.partition(":")
    scenarios = getattr(importlib.import_module(module_name), attribute or "SCENARIOS")
    if not isinstance(scenarios, list | tuple) or not all(isinstance(s, Scenario) for s in scenarios):
        raise TypeError(f"{spec} is not a list of Scenario")
    return list(scenarios)


def table(report: Report) -> Table:
    rows = Table("scenario", "result", "virtual time", "wall s", "calls", "failed")
    rows.columns[0].no_wrap = True
    for o in report.outcomes:
        called, failed = sum(o.fakes.called().values()), sum(o.fakes.failed().values())
        rows.add_row(o.scenario, o.result, virtual_time(o.virtual_s), f"{o.wall_s:.2f}", str(called), str(failed))
    return rows


@app.command()
def simulate(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option(help="A scenario's name, or all")] = "all",
    failure_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of activity calls that fail (0-1), with generated errors")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of every generated answer and failure: same seed, same run")] = 0,
    permanent_failures: Annotated[
        bool,
        typer.Option(
            "--permanent-failures",
            help="Keep each generated error's own retryable flag: some failures are permanent, and a scenario may "
            "then end with that typed failure instead of its expected end",
        ),
    ] = False,
    catalog: Annotated[
        str | None, typer.Option(help="MODULE[:NAME]: run your own list of scenarios instead of the CI catalog")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as one JSON object on the last line")] = False,
) -> None:
    """Run the CI scenarios in virtual time with fake activities; exit 1 if any fails."""
    c: Context = ctx.obj
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # activity failures are the point here, not news
        logging.getLogger("temporalio").setLevel(logging.CRITICAL)
    try:
        scenarios = select(scenario, load_catalog(catalog) if catalog else CATALOG)
    except (KeyError, ImportError, AttributeError, TypeError) as error:
        c.out.abort(str(error).strip("'\""))
    policy = FailurePolicy(rate=failure_rate, retryable=None if permanent_failures else True)

    def progress(outcome: Outcome) -> None:
        c.out.info(
            f"{outcome.scenario}: {outcome.result} ({virtual_time(outcome.virtual_s)} in {outcome.wall_s:.2f} s)"
        )
        for problem in outcome.problems:
            c.out.warn(f"  {problem}")

    report = c.run(
        run_catalog(scenarios, seed=seed, failures=policy, allow_typed_failure=permanent_failures, on_outcome=progress)
    )
    if as_json:
        c.out.data(json.dumps(report.as_json()))
    else:
        c.out.out.print(table(report), width=max(c.out.out.width, 100))
        covered = f"planner branches covered: {len(report.covered)}/{len(report.branches_total)}"
        c.out.data(covered + (f"; never exercised: {', '.join(report.missed)}" if report.missed else ""))
    if report.retried:
        c.out.warn(f"{len(report.retried)} scenario(s) retried after a test-server stall: {', '.join(report.retried)}")
    if not report.passed:
        failed = [o.scenario for o in report.outcomes if not o.passed]
        c.out.abort(f"{len(failed)} scenario(s) failed: {', '.join(failed)}")
