"""Default-filled factories for planner tests: an ordinary situation, so that a case states only what differs.

The virtual clock starts at ``T0``; ``at(s)`` is ``s`` seconds later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from diachronic.ci.planner import deploy, deployment, retire, rollout
from diachronic.contracts import DeployEvent, RolloutStep, VersionInfo
from diachronic.flags import FlagStrategy, VersionFlag
from diachronic.versions import version_info

WORKFLOW = "wf"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def version(seq: int, version_id: str) -> VersionInfo:
    return version_info(WORKFLOW, seq, version_id)


def flag(
    seq: int,
    version_id: str,
    percent: int | None = 100,
    *,
    enabled: bool = True,
    archived: bool = False,
    disabled: bool = False,
) -> VersionFlag:
    """A version flag of ``WORKFLOW`` whose ``All other traffic`` holds ``percent`` (None: no such strategy)."""
    info = version(seq, version_id)
    strategies = (
        []
        if percent is None
        else [
            FlagStrategy(
                name="flexibleRollout",
                title="All other traffic",
                disabled=disabled,
                parameters={"rollout": str(percent), "stickiness": "default", "groupId": info.flag_name},
            )
        ]
    )
    return VersionFlag(info=info, enabled=enabled, archived=archived, strategies=strategies)


def event(version_id: str = "v2", *, seconds: float = 0, **fields: Any) -> DeployEvent:
    return DeployEvent(
        workflow_name=fields.pop("workflow_name", WORKFLOW),
        version_id=version_id,
        sha=version_id,
        environment=fields.pop("environment", "development"),
        event_time=at(seconds),
        **fields,
    )


def queue(**fields: Any) -> deploy.QueueSnapshot:
    return deploy.QueueSnapshot(**{"ci_workflow_name": WORKFLOW, **fields})


def start(**fields: Any) -> deployment.DeploymentSnapshot:
    """v1 live at 100 %, a deploy of v2 in the environment this CI serves."""
    return deployment.DeploymentSnapshot(
        **{"event": event("v2"), "flags": (flag(0, "v1"),), "environment": "development", **fields}
    )


def steps(*pairs: tuple[int, float]) -> tuple[RolloutStep, ...]:
    return tuple(RolloutStep(percent=p, wait_s=w) for p, w in pairs)


def seen(observed: int | None = 0, **fields: Any) -> rollout.TrafficObservation:
    return rollout.TrafficObservation(observed, **fields)


def machine(**fields: Any) -> rollout.RolloutSnapshot:
    """A rollout of 50 %, then 100 %, a minute each, started at T0 from 0 % and polling every 10 s."""
    defaults: dict[str, Any] = {
        "steps": steps((50, 60), (100, 60)),
        "observed": seen(0),
        "now": T0,
        "poll_interval_s": 10,
        "started": True,
        "percent": 0,
        "step_index": 0,
        "step_started_at": T0,
    }
    return rollout.RolloutSnapshot(**{**defaults, **fields})


def retiring(**fields: Any) -> retire.RetireSnapshot:
    """v1 (seq 0) drained, v2 (seq 1) routes 100 %: v1 may retire."""
    defaults: dict[str, Any] = {
        "old": version(0, "v1"),
        "flags": (flag(1, "v2"), flag(0, "v1")),
        "running_on_old_queue": 0,
        "deploying": (),
    }
    return retire.RetireSnapshot(**{**defaults, **fields})
