"""Every CI workflow replays over a recorded history: a change that breaks determinism fails here.

Histories come from ``python -m tests.record_histories``."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from diachronic.ci.worker import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize("name", ["workflowCI", "rollout", "migration", "migrationCanary", "health", "cleanup"])
async def test_replays_recorded_history(name: str) -> None:
    history = WorkflowHistory.from_json(f"{name}-recorded", (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
