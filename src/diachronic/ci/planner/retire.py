"""When an old version may be retired (its workers deleted, its flag archived).

Pure: migration and cleanup read the flags and the running count right before retiring and ask here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from diachronic.ci.planner.schedule import MAX_PERCENT
from diachronic.contracts import VersionInfo
from diachronic.flags import VersionFlag
from diachronic.flags.evaluation import general_percent

__all__ = ["RetireBlocker", "retire_blocker"]


class RetireBlocker(StrEnum):
    RUNNING = "workflows still run on the old task queue"
    ROUTED = "the old version still receives routed traffic"
    NEWEST = "the old version is the newest version"


def retire_blocker(
    flags_newest_first: Sequence[VersionFlag], old: VersionInfo, running_on_old_queue: int
) -> RetireBlocker | None:
    """Safety invariant: never delete the workers of a version that still runs workflows or receives traffic.

    The old version receives no general traffic once some newer enabled flag routes 100 % of it (newest wins);
    isTest traffic always goes to the newest flag, which the old version is not."""
    if running_on_old_queue > 0:
        return RetireBlocker.RUNNING
    live = [f for f in flags_newest_first if not f.archived]
    if live and live[0].info.version_id == old.version_id and live[0].info.seq_id == old.seq_id:
        return RetireBlocker.NEWEST
    for flag in live:
        if flag.info.seq_id <= old.seq_id:
            break
        if flag.enabled and general_percent(flag) == MAX_PERCENT:
            return None
    return RetireBlocker.ROUTED
