"""The flag store port: one flag per deployed workflow version, and the routing they decide.

Implementations: ``diachronic.flags.local`` (SQLite under the data folder, the embedded default) and
``diachronic.flags.unleash`` (production). Both keep the wire format of docs/architecture.md and evaluate exactly as
Unleash's ``flexibleRollout`` does (``diachronic.flags.evaluation``).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from diachronic.contracts import Contract, VersionInfo

DARK_DEPLOY_TITLE = "Dark Deploy Strategy"
GENERAL_TRAFFIC_TITLE = "All other traffic"


class Constraint(Contract):
    context_name: str
    operator: str
    values: list[str] = Field(default_factory=list)
    case_insensitive: bool = False
    inverted: bool = False


class FlagStrategy(Contract):
    """A ``flexibleRollout`` strategy; ``parameters``: ``rollout`` (a percent string), ``stickiness``, ``groupId``."""

    model_config = Contract.model_config | {"extra": "ignore"}

    id: str = ""
    name: str
    title: str | None = None
    disabled: bool = False
    constraints: list[Constraint] = Field(default_factory=list)
    parameters: dict[str, str] = Field(default_factory=dict)


class VersionFlag(Contract):
    """A version flag as the store holds it."""

    info: VersionInfo
    enabled: bool
    archived: bool = False
    strategies: list[FlagStrategy] = Field(default_factory=list)


class FlagStore(Protocol):
    """What the CI, the signaler and the CLI need from a flag store. Methods raise ``FlagStoreError``."""

    async def list_version_flags(self, workflow_name: str, *, include_archived: bool = False) -> list[VersionFlag]:
        """The workflow's version flags, newest (highest sequence id, compared as numbers) first.

        Flags whose name looks like a version flag of this workflow but does not parse are skipped (and logged)."""
        ...

    async def apply_version_flag(self, workflow_name: str, version_id: str) -> VersionInfo:
        """Make ``version_id`` the newest version of the workflow and return it.

        If the newest flag already is this version, it is returned unchanged (its percentages are kept).
        Otherwise a new flag with the next sequence id is created (an archived flag of that exact name is revived),
        with the ``Dark Deploy Strategy`` (isTest IN ["true"], 100 %) and ``All other traffic`` at 0 %, enabled."""
        ...

    async def get_strategies(self, flag_name: str) -> list[FlagStrategy]: ...

    async def set_general_percent(self, flag_name: str, percent: int, *, expected: int | None = None) -> None:
        """Set the ``All other traffic`` rollout to ``percent``; ``NotFound`` if the flag is missing or archived.

        Without ``expected``, a plain write (a human's): a deleted ``All other traffic`` is created again and its
        ``disabled`` state is kept. With ``expected``, a compare-and-set (the automation's): the write happens only
        if that strategy exists, is enabled and holds ``expected``, checked by the store itself at the moment of
        writing; otherwise ``ConcurrentEdit`` (``found``: the rollout held, None when the strategy is gone) and
        nothing changes. See ``diachronic.flags.evaluation.check_expected_percent``."""
        ...

    async def archive_flag(self, flag_name: str) -> None:
        """Archive the flag; archiving an already archived flag is a no-op."""
        ...

    async def route(self, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo | None:
        """The version a workflow with this id should run on: the newest enabled flag wins; None if none is."""
        ...

    async def close(self) -> None: ...
