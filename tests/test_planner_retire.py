"""The retire rule."""

from __future__ import annotations

import pytest
from tests.planner_factories import flag

from diachronic.ci.planner import retire
from diachronic.ci.planner.retire import RetireBlocker
from diachronic.flags import VersionFlag


@pytest.mark.parametrize(
    ("flags", "old_seq", "running", "blocker"),
    [
        ([flag(1, "b", 100), flag(0, "a", 100)], 0, 0, None),
        ([flag(1, "b", 100), flag(0, "a", 100)], 0, 3, RetireBlocker.RUNNING),
        ([flag(1, "b", 60), flag(0, "a", 100)], 0, 0, RetireBlocker.ROUTED),
        ([flag(1, "b", 100, enabled=False), flag(0, "a", 100)], 0, 0, RetireBlocker.ROUTED),
        ([flag(0, "a", 100)], 0, 0, RetireBlocker.NEWEST),
        ([flag(2, "c", 100), flag(1, "b", 0), flag(0, "a", 100)], 0, 0, None),
        ([flag(2, "a", 100), flag(1, "b", 100), flag(0, "a", 100, archived=True)], 1, 0, None),
    ],
    ids=[
        "drained and fully routed away: retire",
        "workflows still running: keep",
        "new version at 60%: old still routed, keep",
        "new flag disabled: keep",
        "never retire the newest version",
        "a newer version at 100% shields it",
        "redeployed older version: retire the middle one",
    ],
)
def test_retire_blocker(flags: list[VersionFlag], old_seq: int, running: int, blocker: RetireBlocker | None) -> None:
    old = next(f.info for f in flags if f.info.seq_id == old_seq)
    assert retire.retire_blocker(flags, old, running) is blocker
