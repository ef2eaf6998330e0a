"""docs/pipeline.md stays true: its exit-code table is the code's, its metrics table lists exactly what is exposed,
its GitHub Actions job is valid YAML that branches on those codes, and each notification kind is documented."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import yaml

from diachronic.ci.contracts import Phase
from diachronic.contracts import VersionInfo
from diachronic.http.dashboard.models import Unavailable, VersionView, WorkflowView
from diachronic.http.metrics import status_families
from diachronic.metrics import REGISTRY
from diachronic.notify.events import NotificationKind
from diachronic.waiting import EXIT_CODES

DOC = (Path(__file__).resolve().parent.parent / "docs" / "pipeline.md").read_text()


def table_rows(after: str) -> list[list[str]]:
    """The body rows of the first table that starts after ``after`` (or whose header line is ``after``)."""
    section = DOC.split(after, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not all(set(cell) <= {"-", ":"} for cell in cells):
            rows.append(cells)
    return rows if after.startswith("|") else rows[1:]


def test_the_exit_code_table_is_the_codes_of_the_command() -> None:
    rows = {int(row[0]): row[1] for row in table_rows("the exit code says how")}
    for ending, code in EXIT_CODES.items():
        assert rows[code].startswith(ending.value), (code, rows[code])
    assert set(rows) == {*EXIT_CODES.values(), 1, 2}


def test_the_github_actions_job_is_valid_and_branches_on_the_documented_codes() -> None:
    block = re.search(r"### A GitHub Actions job\n\n```yaml\n(.*?)```", DOC, re.S)
    assert block is not None
    job = yaml.safe_load(block.group(1))
    steps = job["jobs"]["deploy"]["steps"]
    script = next(step["run"] for step in steps if "diachronic deploy" in step.get("run", ""))
    assert "--wait" in script and "--timeout" in script
    handled = {int(code) for code in re.findall(r"(\d)[|)]", script)}
    assert handled <= set(EXIT_CODES.values())


def test_every_metric_exposed_is_in_the_table_and_every_row_is_exposed() -> None:
    view = WorkflowView(
        workflow_name="orders",
        phase=Phase.ROLLING_OUT,
        from_version=None,
        to_version=VersionInfo(
            workflow_name="orders", version_id="v2", seq_id=1, flag_name="f", task_queue="orders-v2"
        ),
        rollout_percent=30,
        next_step_at=None,
        steps=[],
        paused=False,
        migration=None,
        queued=[],
        last_error=None,
        versions=[
            VersionView(
                seq_id=1,
                version_id="v2",
                task_queue="orders-v2",
                flag_name="f",
                enabled=True,
                archived=False,
                general_percent=30,
                dark_deploy=True,
                share_percent=30.0,
                test_share_percent=100.0,
            )
        ],
        read_at=datetime.now(UTC),
    )
    families = status_families([view], [Unavailable(workflow_name="billing", error="TimedOut", message="slow")])
    exposed = {f.name for f in families} | {
        f.name + ("_total" if f.type == "counter" else "")
        for f in REGISTRY.collect()
        if f.name.startswith("diachronic")
    }
    documented = {row[0].strip("`") for row in table_rows("| metric | type | labels | what |")}
    assert exposed == documented


def test_every_notification_kind_is_documented() -> None:
    kinds = {row[0].strip("`") for row in table_rows("| kind | when |")}
    documented = {k.strip().strip("`") for cell in kinds for k in cell.split("/")}
    assert documented == {kind.value for kind in NotificationKind}
