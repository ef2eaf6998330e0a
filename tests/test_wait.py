"""``--wait`` for pipelines: where a deployment is (pure), how it ended, and the exit codes of the real command
(``deploy --wait``, ``status --wait --timeout``) against the dev server and a CI worker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import CIHarness, ci_harness, event, run_diachronic
from tests.conditions import eventually

from diachronic import waiting
from diachronic.ci import client as ci
from diachronic.ci.contracts import CIState, Deployment, DeployRequest, Phase
from diachronic.contracts import VersionInfo
from diachronic.errors import BackendError, InvalidInput
from diachronic.waiting import EXIT_CODES, Ending, ending_of, locate

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def request(version: str, at: datetime = T0) -> DeployRequest:
    return DeployRequest(event=event("orders", version).model_copy(update={"event_time": at}))


def record(version: str, phase: Phase, at: datetime = T0) -> Deployment:
    return Deployment(request=request(version, at), phase=phase)


@pytest.mark.parametrize(
    ("phase", "ending", "code"),
    [
        (Phase.COMPLETED, Ending.COMPLETED, 0),
        (Phase.FAILED, Ending.FAILED, 3),
        (Phase.ABORTED, Ending.ABORTED, 4),
        (Phase.CANCELLED, Ending.CANCELLED, 5),
        (Phase.ROLLING_OUT, None, None),
        (Phase.MIGRATING, None, None),
    ],
    ids=lambda v: str(v),
)
def test_each_end_has_its_own_exit_code(phase: Phase, ending: Ending | None, code: int | None) -> None:
    assert ending_of(record("v2", phase)) == ending
    assert (EXIT_CODES[ending] if ending else None) == code


def test_exit_codes_are_distinct() -> None:
    assert len(set(EXIT_CODES.values())) == len(Ending) and EXIT_CODES[Ending.TIMEOUT] == 7


LATER = T0 + timedelta(hours=1)
STATE = CIState(
    workflow_name="orders",
    current=record("v3", Phase.ROLLING_OUT),
    queue=[request("v4"), request("v2", LATER)],
    history=[record("v2", Phase.FAILED), record("v1", Phase.COMPLETED)],
)


@pytest.mark.parametrize(
    ("version", "at", "where", "phase", "position"),
    [
        (None, None, "running", Phase.ROLLING_OUT, None),
        ("v3", T0, "running", Phase.ROLLING_OUT, None),
        ("v4", None, "queued", None, 1),
        ("v2", LATER, "queued", None, 2),
        ("v2", T0, "ended", Phase.FAILED, None),
        ("v2", None, "queued", None, 2),
        ("v1", None, "ended", Phase.COMPLETED, None),
        ("v9", None, "missing", None, None),
        ("v3", LATER, "missing", None, None),
    ],
    ids=[
        "no version: the running one",
        "running",
        "queued first",
        "queued second",
        "an earlier deployment of a version queued again",
        "a version queued again: the coming one",
        "ended",
        "never deployed",
        "another deploy event of the running version",
    ],
)
def test_a_deployment_is_found_by_version_and_event_time(
    version: str | None, at: datetime | None, where: str, phase: Phase | None, position: int | None
) -> None:
    found = locate(STATE, version, at)
    assert (found.where, found.deployment.phase if found.deployment else None, found.position) == (
        where,
        phase,
        position,
    )


def test_without_a_version_an_idle_ci_reports_its_last_deployment() -> None:
    idle = CIState(workflow_name="orders", history=[record("v1", Phase.COMPLETED), record("v2", Phase.ABORTED)])
    found = locate(idle)
    assert (found.where, found.event.version_id if found.event else None) == ("ended", "v2")
    assert locate(CIState()).where == "missing"


async def test_a_ci_that_cannot_be_read_for_a_while_does_not_end_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    running = CIState(workflow_name="orders", current=record("v2", Phase.ROLLING_OUT))
    ended = CIState(workflow_name="orders", history=[record("v2", Phase.COMPLETED)])
    script: list[CIState | BackendError] = [running, BackendError("the CI did not answer"), running, ended]
    seen: list[str] = []

    async def states(client: Any, workflow_name: str, *, earlier: bool) -> list[CIState]:
        step = script.pop(0)
        if isinstance(step, BackendError):
            raise step
        return [step]

    monkeypatch.setattr(waiting, "_states", states)
    ending, found = await waiting.wait_for_end(
        cast(Any, None), "orders", version_id="v2", poll_s=0, progress=lambda f: seen.append(f.where), warn=seen.append
    )
    assert (ending, found.where, script) == (Ending.COMPLETED, "ended", [])
    assert seen == ["running", "cannot read the CI's state now, still waiting: the CI did not answer"]


async def test_a_wait_ends_with_timeout_while_the_deployment_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    running = CIState(workflow_name="orders", current=record("v2", Phase.ROLLING_OUT))

    async def states(client: Any, workflow_name: str, *, earlier: bool) -> list[CIState]:
        return [running]

    monkeypatch.setattr(waiting, "_states", states)
    ending, found = await waiting.wait_for_end(cast(Any, None), "orders", timeout_s=0.05, poll_s=0.01)
    assert (ending, found.where) == (Ending.TIMEOUT, "running")


# ------------------------------------------------------------------------------------------------ the command


async def cli(h: CIHarness, data_dir: Path, *args: str) -> tuple[int, str]:
    code, out, err = await run_diachronic(h.client, h.task_queue, *args, DIACHRONIC_DATA_DIR=str(data_dir))
    return code, err + out


@pytest.mark.devserver
async def test_deploy_wait_exits_0_on_completed_4_on_aborted_and_status_wait_7_on_timeout(
    h: CIHarness, data_dir: Path, wf_served: str
) -> None:
    wf = wf_served
    code, text = await cli(h, data_dir, "deploy", wf, "v1", "--wait")
    assert code == 0, text
    assert f"{wf} v1: completed" in text

    waiting = asyncio.create_task(
        cli(h, data_dir, "deploy", wf, "v2", "--steps", "20@0.2s,100@600s", "--poll", "0.2", "--wait")
    )

    async def rolling_out() -> bool:
        return (await ci.status(h.client, wf)).rollout_percent == 20

    await eventually(rolling_out, what="v2 at 20 %")
    code, text = await cli(h, data_dir, "status", wf, "--wait", "--timeout", "0.5s")
    assert code == 7, text
    assert f"{wf} v2: rolling_out" in text and "the deployment goes on" in text
    assert not waiting.done()
    await ci.control(h.client, wf, "abort", reason="pipeline test")
    code, text = await waiting
    assert code == 4, text
    assert f"{wf} v2: aborted: new starts routed back to the previous version, migration stopped (exit 4)" in text

    code, text = await cli(h, data_dir, "status", wf, "--wait", "--json")
    assert code == 4 and '"ending": "aborted"' in text, text


@pytest.mark.devserver
async def test_deploy_wait_exits_3_when_the_deployment_fails(
    dev_env: WorkflowEnvironment, data_dir: Path, monkeypatch: pytest.MonkeyPatch, wf_served: str
) -> None:
    async with ci_harness(dev_env.client, data_dir, f"ci-{uuid.uuid4()}") as h:

        async def refuse(*args: Any, **kwargs: Any) -> VersionInfo:
            raise InvalidInput("this flag store refuses new versions")

        monkeypatch.setattr(h.flags, "apply_version_flag", refuse)
        code, text = await cli(h, data_dir, "deploy", wf_served, "v1", "--wait", "--timeout", "5m")
    assert code == 3, text
    assert "InvalidInput: this flag store refuses new versions (exit 3)" in text


@pytest.mark.devserver
async def test_waiting_for_a_workflow_never_deployed_is_an_error(h: CIHarness, data_dir: Path) -> None:
    code, text = await cli(h, data_dir, "status", "never" + uuid.uuid4().hex[:8], "--wait")
    assert code == 1 and "no deployment of" in text, text
    code, text = await cli(h, data_dir, "status", "x", "--wait", "--timeout", "soon")
    assert code == 1 and "invalid --timeout" in text, text
