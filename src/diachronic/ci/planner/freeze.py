"""Freeze windows: while a freeze is in force, a new deployment waits in the queue and a running rollout holds
its current step, unless the deployment was forced (with a reason, recorded).

A freeze comes from ``diachronic freeze`` (until a time, kept by the freeze store, ``diachronic.ci.freeze``) or
from a recurring window of the configuration (``DIACHRONIC_FREEZE_WINDOWS``: a cron expression for when it starts
and how long it lasts). Pure: the CI reads both (an activity) and asks here, with ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, BeforeValidator, Field, TypeAdapter

from diachronic.contracts import Contract, check_name
from diachronic.signaler.instructions import parse_duration

__all__ = [
    "ALL",
    "RECHECK_S",
    "Freeze",
    "FreezeVerdict",
    "FreezeWindow",
    "active_freeze",
    "freeze_gate",
    "window_freezes",
]

ALL = "*"  # the scope of a freeze of every workflow
RECHECK_S = 30.0  # a held deployment looks again this often: a freeze may be lifted, or a new one set


def _cron(value: str) -> str:
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ValueError(f"{value!r} is not a cron expression of five fields (minute hour day month weekday)")
    return value


def _duration(value: object) -> timedelta:
    """``64h``, ``90m`` (as people write them), or ISO 8601 ``PT64H`` (as a window travels in JSON)."""
    if isinstance(value, str) and value.strip().upper().startswith("P"):
        return _ISO_DURATION.validate_python(value)
    return parse_duration(value)


_ISO_DURATION = TypeAdapter(timedelta)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone (e.g. UTC, Europe/Paris)") from None
    return value


def _scope(value: str) -> str:
    return value if value == ALL else check_name(value, "workflow name")


class FreezeWindow(Contract):
    """A recurring freeze: it starts each time ``cron`` fires (in ``timezone``) and lasts ``duration``."""

    cron: Annotated[str, AfterValidator(_cron)]
    duration: Annotated[timedelta, BeforeValidator(_duration)] = Field(description="e.g. 64h, 90m")
    reason: str = Field(min_length=1, max_length=500)
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    workflows: list[str] | None = Field(default=None, description="the workflows it freezes; none given: all")

    def in_force(self, now: datetime) -> datetime | None:
        """When the window that ``now`` falls in ends, or None when ``now`` is outside every window."""
        local = now.astimezone(ZoneInfo(self.timezone)) + timedelta(microseconds=1)  # a window starting now counts
        started: datetime = croniter(self.cron, local).get_prev(datetime)
        ends = started + self.duration
        return ends if now < ends else None


class Freeze(Contract):
    """A freeze in force for ``scope`` (a workflow name, or ``*``): nothing new starts before ``until``."""

    scope: Annotated[str, AfterValidator(_scope)]
    until: datetime
    reason: str = Field(min_length=1, max_length=500)
    source: Literal["command", "window"] = "command"


def window_freezes(now: datetime, windows: Sequence[FreezeWindow], workflow_name: str | None = None) -> list[Freeze]:
    """The recurring windows in force now, as freezes (only those for ``workflow_name``, when given)."""
    found = []
    for window in windows:
        if workflow_name is not None and window.workflows is not None and workflow_name not in window.workflows:
            continue
        ends = window.in_force(now)
        if ends is None:
            continue
        scopes = [ALL] if window.workflows is None else [workflow_name] if workflow_name else window.workflows
        found += [Freeze(scope=scope, until=ends, reason=window.reason, source="window") for scope in scopes]
    return found


def active_freeze(
    now: datetime, workflow_name: str, frozen: Sequence[Freeze], windows: Sequence[FreezeWindow]
) -> Freeze | None:
    """The freeze in force for ``workflow_name`` now that lifts last (None: no freeze)."""
    found = [f for f in frozen if f.until > now and f.scope in (workflow_name, ALL)]
    found += window_freezes(now, windows, workflow_name)
    return max(found, key=lambda f: f.until, default=None)


@dataclass(frozen=True)
class FreezeVerdict:
    """``hold``: wait (status says why and until when) and look again at ``recheck_at``; else go on, and
    ``overridden`` is the freeze a forced deployment went through (recorded in its history)."""

    hold: Freeze | None = None
    recheck_at: datetime | None = None
    overridden: Freeze | None = None


def freeze_gate(now: datetime, freeze: Freeze | None, *, force_reason: str | None) -> FreezeVerdict:
    """May the deployment start (or the rollout take its next step) now?"""
    if freeze is None:
        return FreezeVerdict()
    if force_reason:
        return FreezeVerdict(overridden=freeze)
    return FreezeVerdict(hold=freeze, recheck_at=min(freeze.until, now + timedelta(seconds=RECHECK_S)))
