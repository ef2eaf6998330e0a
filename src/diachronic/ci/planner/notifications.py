"""Which notifications a change of a deployment produces (docs/pipeline.md).

Pure: a workflow keeps the last ``Progress`` it reported, observes the new one, and asks ``notifications`` what
to publish; it publishes through the ``publish_notification`` activity. Each workflow knows part of a deployment
(the CI its phase, the rollout the percentage and pauses, migration and cleanup the drain): a field a workflow
does not know stays None and produces nothing. Ids are derived from the deployment and the change, so a change
decided again after a retry or a replay keeps its id and receivers de-duplicate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from diachronic.ci.contracts import Phase
from diachronic.notify.events import DeploymentFacts, Notification, NotificationKind, notification_id

__all__ = ["DeploymentFacts", "Progress", "notifications"]


@dataclass(frozen=True)
class Progress:
    """One observer's view of a deployment; None: this observer does not know."""

    phase: Phase | None = None
    percent: int | None = None
    paused: bool | None = None
    pauses: int = 0  # how many times the rollout was paused: tells one pause from the next
    stopped_by_human: bool = False  # the abort was a human's (ABORTED then tells ``stopped``, not ``aborted``)
    drained: bool | None = None  # nothing runs on the previous version's task queue
    retired: bool | None = None
    reason: str | None = None  # why it failed, stopped or was aborted: typed error, the human's reason, the rule


def _phase_kind(after: Progress) -> NotificationKind | None:
    match after.phase:
        case Phase.PREPARING:
            return NotificationKind.STARTED
        case Phase.COMPLETED:
            return NotificationKind.COMPLETED
        case Phase.FAILED:
            return NotificationKind.FAILED
        case Phase.CANCELLED:
            return NotificationKind.STOPPED
        case Phase.ABORTED:
            return NotificationKind.STOPPED if after.stopped_by_human else NotificationKind.ABORTED
        case Phase.STOPPED:  # a human edited the percentage by hand: the rollout stepped aside
            return NotificationKind.STOPPED
        case Phase.DUPLICATE:  # the version already is the newest live one: done, nothing to do
            return NotificationKind.COMPLETED
    return None


def _changes(before: Progress, after: Progress) -> list[tuple[NotificationKind, str]]:
    """(kind, detail) of every change from ``before`` to ``after``, in the order they happened."""
    found: list[tuple[NotificationKind, str]] = []
    if after.phase is not None and after.phase != before.phase and (kind := _phase_kind(after)) is not None:
        found.append((kind, ""))
    if after.percent is not None and before.percent is not None and after.percent > before.percent:
        found.append((NotificationKind.STEP_REACHED, str(after.percent)))
    if after.paused is not None and before.paused is not None and after.paused != before.paused:
        found.append((NotificationKind.PAUSED if after.paused else NotificationKind.RESUMED, str(after.pauses)))
    if after.drained and before.drained is False:
        found.append((NotificationKind.MIGRATION_DONE, ""))
    if after.retired and before.retired is False:
        found.append((NotificationKind.RETIRED, ""))
    final = [c for c in found if c[0] in _FINAL]
    return [c for c in found if c[0] not in _FINAL] + final  # the end is always told last


_FINAL = {NotificationKind.COMPLETED, NotificationKind.FAILED, NotificationKind.ABORTED, NotificationKind.STOPPED}


def notifications(facts: DeploymentFacts, before: Progress, after: Progress, *, now: datetime) -> list[Notification]:
    """The notifications for the change from ``before`` to ``after`` (none when nothing worth telling changed)."""
    phase = after.phase or before.phase
    percent = after.percent if after.percent is not None else before.percent
    return [
        Notification(
            id=notification_id(facts.workflow_name, facts.key, kind, detail),
            kind=kind,
            workflow_name=facts.workflow_name,
            version_id=facts.version_id,
            from_version_id=facts.from_version_id,
            phase=(phase or Phase.ROLLING_OUT).value,
            percent=percent,
            reason=after.reason if kind in _FINAL or kind is NotificationKind.PAUSED else None,
            at=now,
            github=facts.github,
        )
        for kind, detail in _changes(before, after)
    ]
