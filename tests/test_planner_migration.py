"""Migration's decisions."""

from __future__ import annotations

import pytest

from diachronic.ci.planner import migration
from diachronic.ci.planner.migration import MigrationAction


@pytest.mark.parametrize(
    ("eligible", "running", "action"),
    [(5, 10, MigrationAction.SIGNAL_MORE), (0, 10, MigrationAction.WAIT), (0, 0, MigrationAction.RETIRE)],
    ids=["more to signal", "waiting for the rest", "drained"],
)
def test_next_migration_action(eligible: int, running: int, action: MigrationAction) -> None:
    assert migration.next_migration_action(eligible_unsignalled=eligible, running_on_old_queue=running) is action
