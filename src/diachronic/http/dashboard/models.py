"""The dashboard's JSON API: ``diachronic status --json`` plus the versions the flag store holds."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from diachronic.ci.contracts import CIStatus, Control
from diachronic.ci.planner.freeze import Freeze
from diachronic.contracts import Contract

__all__ = [
    "ControlName",
    "ControlRequest",
    "ControlResult",
    "Routing",
    "Unavailable",
    "VersionView",
    "WorkflowList",
    "WorkflowView",
]

ControlName = Control


class VersionView(Contract):
    """One version flag of the workflow and the share of new starts it receives now."""

    seq_id: int = Field(ge=0)
    version_id: str
    task_queue: str
    flag_name: str
    enabled: bool
    archived: bool
    general_percent: int | None = Field(
        description='the rollout of its "All other traffic" strategy; null when missing or not a valid percent'
    )
    dark_deploy: bool = Field(description="an active Dark Deploy Strategy routes test traffic (isTest) to it")
    share_percent: float = Field(ge=0, le=100, description="percent of new starts (isTest false) routed to it")
    test_share_percent: float = Field(ge=0, le=100, description="percent of new test starts (isTest true) routed to it")


class Routing(Contract):
    """How the shares were computed, and what no version receives (a start there gets TaskQueueNotFound)."""

    method: Literal["exact", "sampled"] = Field(
        description="exact: from the percentages (newest version wins); sampled: the real evaluation over fixed ids"
    )
    unrouted_percent: float = Field(ge=0, le=100)
    unrouted_test_percent: float = Field(ge=0, le=100)


class WorkflowView(CIStatus):
    """What ``diachronic status <workflow> --json`` prints, plus the versions from the flag store."""

    versions: list[VersionView] = Field(default_factory=list, description="newest first, archived ones included")
    routing: Routing | None = None
    versions_error: str | None = Field(default=None, description="why the flag store could not be read")
    read_at: datetime = Field(description="when this status was read (older than a few seconds: the CI is slow)")


class Unavailable(Contract):
    """A workflow whose status could not be read, and why."""

    workflow_name: str
    error: str
    message: str


class WorkflowList(Contract):
    """``GET /api/workflows``: what ``diachronic status --json`` prints (``workflows``), and more."""

    workflows: list[WorkflowView]
    unavailable: list[Unavailable] = Field(default_factory=list)
    controls_need_token: bool = Field(description="controls need Authorization: Bearer <DIACHRONIC_SIGNALER_TOKEN>")
    freezes: list[Freeze] = Field(
        default_factory=list,
        description="freezes in force (diachronic freeze, and recurring windows): new deployments wait, rollouts hold",
    )
    freezes_error: str | None = Field(default=None, description="why the freezes could not be read now")
    read_at: datetime


class ControlRequest(Contract):
    reason: str | None = Field(default=None, max_length=500, description="recorded with the control")


class ControlResult(Contract):
    workflow_name: str
    control: ControlName
    message: str = Field(description="the CI's answer, e.g. 'continuing: the rollout starts'")
