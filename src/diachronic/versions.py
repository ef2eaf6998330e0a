"""Pure naming and ordering of workflow versions: task queues, flag names, sequence ids, previous version.

No I/O here: the CI workflow, the flag stores and the CLI all call these, so the wire format of docs/architecture.md
lives in one place.

    task queue   <workflowName>-<versionId>
    flag name    workflow.<workflowName>.seqId.<NNN>.version.<versionId>   (NNN: at least 3 digits)

Workflow names and version ids may contain letters, digits, ``-`` and ``_`` (``contracts.check_name``); a
``.`` is rejected up front because flag names are split on it. Sequence ids are compared as numbers, so seq
1000 is newer than seq 999 (the original sorted names lexically, defect 18).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Protocol, TypeVar

from diachronic.contracts import VersionInfo, check_name
from diachronic.errors import InvalidInput
from diachronic.flags import VersionFlag

__all__ = [
    "FLAG_PREFIX",
    "FlagApply",
    "flag_name",
    "flag_name_prefix",
    "flag_to_apply",
    "format_seq_id",
    "next_seq_id",
    "parse_flag_name",
    "previous_version",
    "seq_of",
    "sort_newest_first",
    "task_queue",
    "task_queue_twins",
    "version_info",
]

FLAG_PREFIX = "workflow"
SEQ_WIDTH = 3
_SEQ_PATTERN = re.compile(r"^[0-9]+$")

T = TypeVar("T", bound=VersionFlag | VersionInfo | str)


def _valid(value: str, what: str) -> str:
    """``check_name`` raising ``InvalidInput`` instead of ``ValueError``: callers see one error type."""
    try:
        return check_name(value, what)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _valid_seq(seq_id: int) -> int:
    if isinstance(seq_id, bool) or not isinstance(seq_id, int) or seq_id < 0:
        raise InvalidInput(f"sequence id must be a non-negative integer, got {seq_id!r}")
    return seq_id


def task_queue(workflow_name: str, version_id: str) -> str:
    """The immutable task queue of one version: ``<workflowName>-<versionId>``."""
    return f"{_valid(workflow_name, 'workflow name')}-{_valid(version_id, 'version id')}"


def task_queue_twins(workflow_name: str, version_id: str) -> list[tuple[str, str]]:
    """The other ``(workflow name, version id)`` pairs with this pair's task queue: ``orders`` + ``a-b`` and
    ``orders-a`` + ``b`` both make ``orders-a-b``. Every other ``-`` of the queue is a place it splits into valid
    names; a deployment checks that none of them is deployed (two versions on one queue run each other's work)."""
    queue = task_queue(workflow_name, version_id)
    twins = []
    for at, char in enumerate(queue):
        if char != "-" or at == len(workflow_name):
            continue
        other = (queue[:at], queue[at + 1 :])
        try:
            check_name(other[0], "workflow name")
            check_name(other[1], "version id")
        except ValueError:
            continue
        twins.append(other)
    return twins


def format_seq_id(seq_id: int) -> str:
    """``000``, ``001`` ... ``999``, ``1000``: zero-padded to at least 3 digits, as the original did."""
    return f"{_valid_seq(seq_id):0{SEQ_WIDTH}d}"


def flag_name(workflow_name: str, seq_id: int, version_id: str) -> str:
    """``workflow.<workflowName>.seqId.<NNN>.version.<versionId>``."""
    wf = _valid(workflow_name, "workflow name")
    vid = _valid(version_id, "version id")
    return f"{FLAG_PREFIX}.{wf}.seqId.{format_seq_id(seq_id)}.version.{vid}"


def flag_name_prefix(workflow_name: str) -> str:
    """``workflow.<workflowName>.``: every version flag of the workflow (and no other flag) starts so."""
    return f"{FLAG_PREFIX}.{_valid(workflow_name, 'workflow name')}."


def parse_flag_name(name: str) -> tuple[str, int, str]:
    """``(workflow_name, seq_id, version_id)`` of a version flag name; ``InvalidInput`` for anything else.

    Strict, so that ``flag_name(*parse_flag_name(n)) == n`` always holds: exactly six ``.``-separated
    parts with the literal words ``workflow``, ``seqId`` and ``version``, valid names, and a canonical
    sequence id (digits, exactly 3 below 1000, no extra leading zeros above). Matching is exact, never by
    suffix (defect 19).
    """
    parts = name.split(".")
    if len(parts) != 6 or parts[0] != FLAG_PREFIX or parts[2] != "seqId" or parts[4] != "version":
        raise InvalidInput(
            f"{name!r} is not a version flag name (expected workflow.<workflowName>.seqId.<NNN>.version.<versionId>)"
        )
    workflow_name, seq, version_id = parts[1], parts[3], parts[5]
    if not _SEQ_PATTERN.match(seq):
        raise InvalidInput(f"{name!r} has a non-numeric sequence id {seq!r}")
    seq_id = int(seq)
    if format_seq_id(seq_id) != seq:
        raise InvalidInput(f"{name!r} has a non-canonical sequence id {seq!r} (expected {format_seq_id(seq_id)!r})")
    try:
        check_name(workflow_name, "workflow name")
        check_name(version_id, "version id")
    except ValueError as exc:
        raise InvalidInput(f"{name!r} is not a valid version flag name: {exc}") from None
    return workflow_name, seq_id, version_id


def version_info(workflow_name: str, seq_id: int, version_id: str, environment: str | None = None) -> VersionInfo:
    """The full ``VersionInfo`` of one version: names derived here, never assembled by hand elsewhere."""
    return VersionInfo(
        workflow_name=workflow_name,
        version_id=version_id,
        seq_id=_valid_seq(seq_id),
        flag_name=flag_name(workflow_name, seq_id, version_id),
        task_queue=task_queue(workflow_name, version_id),
        environment=environment,
    )


def seq_of(item: VersionFlag | VersionInfo | str) -> int:
    """The sequence id of a flag, a version or a flag name."""
    if isinstance(item, VersionFlag):
        return item.info.seq_id
    if isinstance(item, VersionInfo):
        return item.seq_id
    return parse_flag_name(item)[1]


def _name_of(item: VersionFlag | VersionInfo | str) -> str:
    if isinstance(item, VersionFlag):
        return item.info.flag_name
    if isinstance(item, VersionInfo):
        return item.flag_name
    return item


def sort_newest_first(flags: Iterable[T]) -> list[T]:
    """Highest sequence id first, compared as numbers (1000 before 999); ties broken by name, stably."""
    return sorted(flags, key=lambda f: (seq_of(f), _name_of(f)), reverse=True)


def next_seq_id(existing: Iterable[VersionFlag | VersionInfo | str]) -> int:
    """One more than the highest sequence id in ``existing``; 0 for the first version.

    Pass archived flags too: a sequence id is then never reused, even after the newest flag was archived
    by hand.
    """
    return max((seq_of(f) for f in existing), default=-1) + 1


def _is_archived(item: VersionFlag | VersionInfo) -> bool:
    return isinstance(item, VersionFlag) and item.archived


def _info(item: VersionFlag | VersionInfo) -> VersionInfo:
    return item.info if isinstance(item, VersionFlag) else item


def previous_version(
    flags_newest_first: Sequence[VersionFlag | VersionInfo], deploying_version_id: str
) -> VersionInfo | None:
    """The version a deployment of ``deploying_version_id`` moves traffic away from; None if initial.

    Rule (original behaviour §2.3 step 3): the newest non-archived flag whose version id differs from the
    one being deployed, computed *before* the new flag is created. It is not "current seq - 1" (the README's
    wording, defect 21): after a roll-back by redeploy the previous version is whatever currently receives
    traffic. Version ids are compared exactly. The input is re-sorted by sequence id, so an unsorted list
    gives the same answer.
    """
    for item in sort_newest_first(list(flags_newest_first)):
        if _is_archived(item):
            continue
        info = _info(item)
        if info.version_id != deploying_version_id:
            return info
    return None


class Listed(Protocol):
    """A flag as a store lists it: its version and whether it is archived (``VersionFlag``, or a store's own entry)."""

    @property
    def info(self) -> VersionInfo: ...

    @property
    def archived(self) -> bool: ...


class FlagApply(StrEnum):
    """What ``FlagStore.apply_version_flag`` does to make a version the newest."""

    KEEP = "keep"  # the newest live flag already is this version: returned unchanged, percentages kept (defect 17)
    REVIVE = "revive"  # the newest flag of all is an archived flag of this very version: revived, as a new deployment
    CREATE = "create"  # a new flag with the next sequence id, computed over archived flags too (never reused)


def flag_to_apply(
    flags: Sequence[Listed], workflow_name: str, version_id: str, environment: str | None = None
) -> tuple[FlagApply, VersionInfo]:
    """The rule every flag store follows to deploy ``version_id``, over all its flags of the workflow (archived
    ones included): what to do, and the version it makes the newest."""
    ordered = sort_newest_first([f.info for f in flags])
    archived = {f.info.flag_name for f in flags if f.archived}
    live = [info for info in ordered if info.flag_name not in archived]
    if live and live[0].version_id == version_id:
        return FlagApply.KEEP, live[0]
    if ordered and ordered[0].flag_name in archived and ordered[0].version_id == version_id:
        return FlagApply.REVIVE, ordered[0]
    return FlagApply.CREATE, version_info(workflow_name, next_seq_id(ordered), version_id, environment)
