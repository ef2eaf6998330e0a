"""The scenario catalog on the time-skipping server, as ``make test`` runs it on every push: at failure rates 0 and
0.2 every scenario reaches its expected end, and between them every CI planner branch is exercised."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import pytest

from diachronic.simulation.branches import all_branches
from diachronic.simulation.fakes import FailurePolicy
from diachronic.simulation.runner import Report, run_catalog
from diachronic.simulation.scenarios import CATALOG

EVERY_PATH = {
    "initial",
    "migratory",
    "dark-continue",
    "non-migratory",
    "hand-edit",
    "cancel",
    "queued",
    "redeploy-older",
    "failure-burst",
    "continue-as-new",
    "pause-resume-promote",
    "abort",
}


@pytest.fixture(autouse=True)
def quiet_temporal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="temporalio")  # injected failures are the point, not news


def test_the_catalog_covers_every_path_of_the_issue() -> None:
    names = [s.name for s in CATALOG]
    assert set(names) >= EVERY_PATH and len(names) == len(set(names))
    for scenario in CATALOG:
        assert scenario.about and scenario.expect.phases, scenario.name


def explain(report: Report) -> str:
    return "\n".join(f"{o.scenario}: {o.result}: {'; '.join(o.problems)}" for o in report.outcomes if not o.passed)


async def test_every_scenario_reaches_its_end_and_every_branch_is_exercised() -> None:
    report = await run_catalog(CATALOG, seed=0)
    assert report.passed, explain(report)
    assert report.missed == [], f"planner branches never exercised: {report.missed}"
    assert len(report.covered) == len(all_branches())
    for outcome in report.outcomes:
        if outcome.retried:  # a test-server stall, run again from the same seed: visible, not fatal
            warnings.warn(f"{outcome.scenario} was retried after: {outcome.retried}", stacklevel=1)


async def test_every_scenario_reaches_its_end_when_a_fifth_of_the_calls_fail() -> None:
    report = await run_catalog(CATALOG, seed=1, failures=FailurePolicy(rate=0.2))
    assert report.passed, explain(report)
    failed = sum(sum(o.fakes.failed().values()) for o in report.outcomes)
    called = sum(sum(o.fakes.called().values()) for o in report.outcomes)
    assert 0.1 < failed / called < 0.35  # the failures really happened (scripted bursts add a few)
    assert any(c.lost_reply for o in report.outcomes for c in o.fakes.calls)  # some after the work was done


def test_diachronic_simulate_prints_the_summary_as_json_and_exits_non_zero_on_failure() -> None:
    command = [sys.executable, "-m", "diachronic.cli", "simulate", "--scenario", "initial", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(summary) >= {"scenarios", "branches_covered", "branches_total"}
    [initial] = summary["scenarios"]
    assert initial["name"] == "initial" and initial["passed"] is True
    assert set(initial) >= {"virtual_s", "wall_s"}
    assert summary["branches_total"] == len(all_branches())
    assert "DeploymentKind.INITIAL" not in summary["branches_missed"]

    refused = subprocess.run([*command[:4], "--scenario", "no-such"], capture_output=True, text=True, timeout=60)
    # a failing scenario: the failing-step one, told to expect success, is not in the catalog; use --catalog
    failing = subprocess.run(
        [*command[:4], "--catalog", "tests.simulation_failing:SCENARIOS"], capture_output=True, text=True, timeout=120
    )
    assert failing.returncode == 1 and "1 scenario(s) failed: expects-too-much" in failing.stderr
    assert refused.returncode == 1 and "choose all or one of" in refused.stderr
