"""Default-filled factories for planner tests: a case states only what differs from an ordinary situation."""

from __future__ import annotations

from diachronic.flags import FlagStrategy, VersionFlag
from diachronic.versions import version_info

WORKFLOW = "wf"


def flag(seq: int, version: str, percent: int | None, *, enabled: bool = True, archived: bool = False) -> VersionFlag:
    """A version flag of ``WORKFLOW`` whose ``All other traffic`` holds ``percent`` (None: no such strategy)."""
    info = version_info(WORKFLOW, seq, version)
    strategies = (
        []
        if percent is None
        else [
            FlagStrategy(
                name="flexibleRollout",
                title="All other traffic",
                parameters={"rollout": str(percent), "stickiness": "default", "groupId": info.flag_name},
            )
        ]
    )
    return VersionFlag(info=info, enabled=enabled, archived=archived, strategies=strategies)
