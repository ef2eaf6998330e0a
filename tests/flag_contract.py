"""The flag store contract: ONE suite that every ``FlagStore`` implementation must pass (docs/architecture.md).

Use it by subclassing ``FlagStoreContract`` in a ``test_*.py`` module and providing a ``harness`` fixture::

    class TestLocalFlagStore(FlagStoreContract):
        @pytest.fixture
        async def harness(self, tmp_path): ...  # yield a FlagHarness

The harness holds the store and a ``human`` doing what only a human (or a test) does through the store's own admin
surface: seeding flags with arbitrary names, deleting/disabling strategies, switching a flag off, editing a
percent. ``settle`` lets a store whose reads lag its writes (Unleash's client refreshes every
``unleash_refresh_s``) catch up before routing.
Every test uses its own fresh workflow name, so a shared server can run the suite without cleaning up.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from diachronic.contracts import VersionInfo
from diachronic.errors import ConcurrentEdit, InvalidInput, NotFound
from diachronic.flags import (
    DARK_DEPLOY_TITLE,
    GENERAL_TRAFFIC_TITLE,
    Constraint,
    FlagStore,
    FlagStrategy,
    VersionFlag,
)
from diachronic.flags.evaluation import bucket, general_percent, general_strategy
from diachronic.versions import flag_name, previous_version, task_queue


class HumanEdits(Protocol):
    """What only a human (or a test) does to flags, through the store's own admin surface, behind the store's back."""

    async def seed_flag(
        self, name: str, *, general_percent: int = 0, enabled: bool = True, archived: bool = False
    ) -> None:
        """Create a flag with exactly this name and the two standard strategies, bypassing the store's rules."""
        ...

    async def delete_strategy(self, flag_name: str, title: str) -> None: ...

    async def disable_strategy(self, flag_name: str, title: str) -> None: ...

    async def set_flag_enabled(self, flag_name: str, enabled: bool) -> None: ...

    async def edit_percent(self, flag_name: str, percent: int) -> None:
        """Set the rollout of ``All other traffic``, as in the Unleash UI."""
        ...


class FlagHarness(Protocol):
    """A store under test, and a human editing the same flags."""

    store: FlagStore
    human: HumanEdits

    def edit_during_next_write(self, flag_name: str, percent: int) -> None:
        """Arrange for ``human.edit_percent(flag_name, percent)`` to land inside the store's next write, after
        whatever the store read to prepare it and just before the write reaches the backend."""
        ...

    async def settle(self) -> None:
        """Wait until routing sees every write made so far."""
        ...


def assert_version(info: VersionInfo, workflow_name: str, seq_id: int, version_id: str) -> None:
    """Every derived name of a version, exactly as docs/architecture.md writes it (the environment is the store's)."""
    assert (info.workflow_name, info.seq_id, info.version_id) == (workflow_name, seq_id, version_id)
    assert info.flag_name == flag_name(workflow_name, seq_id, version_id)
    assert info.task_queue == task_queue(workflow_name, version_id)


def strategy_shape(strategy: FlagStrategy) -> tuple[str, str | None, bool, list[Constraint], dict[str, str]]:
    return strategy.name, strategy.title, strategy.disabled, strategy.constraints, strategy.parameters


HumanEdit = Callable[[HumanEdits, str], Awaitable[None]]
HUMAN_EDITS: dict[str, tuple[HumanEdit, int | None]] = {
    "a new value: found is the human's": (lambda human, flag: human.edit_percent(flag, 30), 30),
    "the strategy deleted: never re-created": (
        lambda human, flag: human.delete_strategy(flag, GENERAL_TRAFFIC_TITLE),
        None,
    ),
    "the strategy disabled: the value is as read, the strategy is not": (
        lambda human, flag: human.disable_strategy(flag, GENERAL_TRAFFIC_TITLE),
        10,
    ),
}
"""What a human may do to ``All other traffic`` (read at 10 %) before the automation's conditional write."""

IS_TEST = Constraint(context_name="isTest", operator="IN", values=["true"], case_insensitive=False, inverted=False)
WORKFLOW_IDS = [f"order-{i}" for i in range(300)]


class FlagStoreContract:
    """The behaviour every flag store shares. Subclasses provide the ``harness`` fixture."""

    @pytest.fixture
    def wf(self) -> str:
        return f"wf-{uuid.uuid4().hex[:10]}"

    @staticmethod
    async def flags(harness: FlagHarness, wf: str, *, include_archived: bool = False) -> list[VersionFlag]:
        return await harness.store.list_version_flags(wf, include_archived=include_archived)

    @staticmethod
    async def percent(harness: FlagHarness, name: str) -> int | None:
        return general_percent(await harness.store.get_strategies(name))

    # -- naming and sequence ids -----------------------------------------------------------------------------

    async def test_first_deploy_creates_seq_000_with_wire_names(self, harness: FlagHarness, wf: str) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        assert_version(info, wf, 0, "v1")
        [flag] = await self.flags(harness, wf)
        assert flag.info == info
        assert flag.enabled and not flag.archived

    async def test_each_new_version_gets_the_next_seq_id_and_lists_newest_first(
        self, harness: FlagHarness, wf: str
    ) -> None:
        for seq, version in enumerate(["a", "b", "c"]):
            assert_version(await harness.store.apply_version_flag(wf, version), wf, seq, version)
        assert [f.info.version_id for f in await self.flags(harness, wf)] == ["c", "b", "a"]

    async def test_names_with_dashes_and_underscores_round_trip(self, harness: FlagHarness) -> None:
        wf = f"order-service_{uuid.uuid4().hex[:6]}"
        info = await harness.store.apply_version_flag(wf, "feat-x_2")
        assert_version(info, wf, 0, "feat-x_2")
        assert [f.info for f in await self.flags(harness, wf)] == [info]

    @pytest.mark.parametrize(
        ("workflow_suffix", "version_id"),
        [
            pytest.param(".x", "v1", id="a dot in the workflow name"),
            pytest.param("", "v1.2", id="a dot in the version id"),
            pytest.param("", "", id="an empty version id"),
        ],
    )
    async def test_invalid_names_are_rejected_and_change_nothing(
        self, harness: FlagHarness, wf: str, workflow_suffix: str, version_id: str
    ) -> None:
        with pytest.raises(InvalidInput):
            await harness.store.apply_version_flag(wf + workflow_suffix, version_id)
        assert await self.flags(harness, wf, include_archived=True) == []

    async def test_seq_ids_are_numbers_past_999(self, harness: FlagHarness, wf: str) -> None:
        for seq in (998, 1000, 999, 1001):
            await harness.human.seed_flag(flag_name(wf, seq, f"v{seq}"))
        assert [f.info.seq_id for f in await self.flags(harness, wf)] == [1001, 1000, 999, 998]
        info = await harness.store.apply_version_flag(wf, "next")
        assert_version(info, wf, 1002, "next")
        assert info.flag_name.endswith(".seqId.1002.version.next")

    async def test_flags_of_other_workflows_never_mix(self, harness: FlagHarness, wf: str) -> None:
        await harness.store.apply_version_flag(wf, "v1")
        for other in (f"{wf}-2", f"{wf}_2", f"{wf}2"):
            await harness.store.apply_version_flag(other, "v9")
        assert [f.info.workflow_name for f in await self.flags(harness, wf)] == [wf]
        assert_version(await harness.store.apply_version_flag(wf, "v2"), wf, 1, "v2")

    async def test_unknown_workflow_has_no_flags_and_routes_nowhere(self, harness: FlagHarness, wf: str) -> None:
        assert await self.flags(harness, wf, include_archived=True) == []
        assert await harness.store.route(wf, "order-1") is None
        assert await harness.store.route(wf, "order-1", is_test=True) is None

    async def test_malformed_look_alike_flags_are_skipped_not_fatal(self, harness: FlagHarness, wf: str) -> None:
        for bad in (
            f"workflow.{wf}.seqId.abc.version.v1",
            f"workflow.{wf}.seqId.7.version.v1",
            f"workflow.{wf}.seqId.005.version",
            f"workflow.{wf}.seqId.005.release.v1",
        ):
            await harness.human.seed_flag(bad, general_percent=100)
        await harness.human.seed_flag(flag_name(wf, 1, "good"), general_percent=100)
        assert [f.info.flag_name for f in await self.flags(harness, wf)] == [flag_name(wf, 1, "good")]
        assert_version(await harness.store.apply_version_flag(wf, "v2"), wf, 2, "v2")
        await harness.settle()
        routed = await harness.store.route(wf, "order-1")
        assert routed is not None and routed.version_id == "good"

    # -- strategy content (docs/architecture.md) ------------------------------------------------------------

    async def test_new_flag_has_exactly_the_design_strategies(self, harness: FlagHarness, wf: str) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        strategies = await harness.store.get_strategies(info.flag_name)
        params = {"stickiness": "default", "groupId": info.flag_name}
        assert [strategy_shape(s) for s in strategies] == [
            ("flexibleRollout", DARK_DEPLOY_TITLE, False, [IS_TEST], {"rollout": "100", **params}),
            ("flexibleRollout", GENERAL_TRAFFIC_TITLE, False, [], {"rollout": "0", **params}),
        ]
        [flag] = await self.flags(harness, wf)
        assert [strategy_shape(s) for s in flag.strategies] == [strategy_shape(s) for s in strategies]

    async def test_get_strategies_of_an_unknown_flag_is_not_found(self, harness: FlagHarness, wf: str) -> None:
        with pytest.raises(NotFound):
            await harness.store.get_strategies(flag_name(wf, 0, "nope"))

    # -- percentages -----------------------------------------------------------------------------------------

    async def test_set_general_percent_changes_only_general_traffic(self, harness: FlagHarness, wf: str) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        before = await harness.store.get_strategies(info.flag_name)
        for percent in (10, 55, 100, 0):
            await harness.store.set_general_percent(info.flag_name, percent)
            after = await harness.store.get_strategies(info.flag_name)
            assert general_percent(after) == percent
            assert strategy_shape(after[0]) == strategy_shape(before[0])
            [flag] = await self.flags(harness, wf)
            assert general_percent(flag) == percent

    @pytest.mark.parametrize("percent", [-1, 101, 1000])
    async def test_set_general_percent_rejects_out_of_range(self, harness: FlagHarness, wf: str, percent: int) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(info.flag_name, 20)
        with pytest.raises(InvalidInput):
            await harness.store.set_general_percent(info.flag_name, percent)
        assert await self.percent(harness, info.flag_name) == 20

    async def test_set_general_percent_on_an_unknown_flag_is_not_found(self, harness: FlagHarness, wf: str) -> None:
        with pytest.raises(NotFound):
            await harness.store.set_general_percent(flag_name(wf, 0, "nope"), 10)

    async def test_set_general_percent_recreates_a_deleted_general_strategy(
        self, harness: FlagHarness, wf: str
    ) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        await harness.human.delete_strategy(info.flag_name, GENERAL_TRAFFIC_TITLE)
        assert general_strategy(await harness.store.get_strategies(info.flag_name)) is None
        await harness.store.set_general_percent(info.flag_name, 30)
        strategies = await harness.store.get_strategies(info.flag_name)
        general = general_strategy(strategies)
        assert general is not None and not general.disabled and general.constraints == []
        assert general.parameters == {"rollout": "30", "stickiness": "default", "groupId": info.flag_name}
        assert [s.title for s in strategies].count(DARK_DEPLOY_TITLE) == 1

    async def test_a_human_disabling_general_traffic_is_kept(self, harness: FlagHarness, wf: str) -> None:
        old = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(old.flag_name, 100)
        new = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(new.flag_name, 100)
        await harness.human.disable_strategy(new.flag_name, GENERAL_TRAFFIC_TITLE)
        await harness.store.set_general_percent(new.flag_name, 50)
        general = general_strategy(await harness.store.get_strategies(new.flag_name))
        assert general is not None and general.disabled and general.parameters["rollout"] == "50"
        await harness.settle()
        assert await harness.store.route(wf, "order-1") == old
        assert await harness.store.route(wf, "order-1", is_test=True) == new

    # -- compare-and-set: the automation writes only on the value it read ---------------------------------------

    async def test_a_conditional_write_on_the_value_read_is_applied(self, harness: FlagHarness, wf: str) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        for read, percent in ((0, 10), (10, 25), (25, 25), (25, 100), (100, 0)):
            await harness.store.set_general_percent(info.flag_name, percent, expected=read)
            assert await self.percent(harness, info.flag_name) == percent

    @pytest.mark.parametrize(("edit", "found"), HUMAN_EDITS.values(), ids=HUMAN_EDITS)
    async def test_a_conditional_write_after_a_human_edit_is_refused_and_changes_nothing(
        self, harness: FlagHarness, wf: str, edit: HumanEdit, found: int | None
    ) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(info.flag_name, 10, expected=0)
        read = await self.percent(harness, info.flag_name)
        await edit(harness.human, info.flag_name)
        before = await harness.store.get_strategies(info.flag_name)
        with pytest.raises(ConcurrentEdit) as refused:
            await harness.store.set_general_percent(info.flag_name, 20, expected=read)
        assert refused.value.found == found and not refused.value.retryable
        assert await harness.store.get_strategies(info.flag_name) == before

    async def test_an_edit_landing_between_the_read_and_the_write_is_never_overwritten(
        self, harness: FlagHarness, wf: str
    ) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(info.flag_name, 10)
        harness.edit_during_next_write(info.flag_name, 45)
        with pytest.raises(ConcurrentEdit) as refused:
            await harness.store.set_general_percent(info.flag_name, 20, expected=10)
        assert refused.value.found == 45
        assert await self.percent(harness, info.flag_name) == 45
        await harness.store.set_general_percent(info.flag_name, 50, expected=45)  # on the human's value: applied
        assert await self.percent(harness, info.flag_name) == 50

    async def test_a_conditional_write_to_an_archived_or_unknown_flag_is_not_found(
        self, harness: FlagHarness, wf: str
    ) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(info.flag_name, 10)
        await harness.store.archive_flag(info.flag_name)
        for name in (info.flag_name, flag_name(wf, 1, "nope")):
            with pytest.raises(NotFound):
                await harness.store.set_general_percent(name, 20, expected=10)
        assert await self.percent(harness, info.flag_name) == 10

    @pytest.mark.parametrize("expected", [-1, 101, True])
    async def test_a_bad_expected_value_is_invalid_input(self, harness: FlagHarness, wf: str, expected: int) -> None:
        info = await harness.store.apply_version_flag(wf, "v1")
        with pytest.raises(InvalidInput):
            await harness.store.set_general_percent(info.flag_name, 20, expected=expected)
        assert await self.percent(harness, info.flag_name) == 0

    # -- archive, revive, re-create --------------------------------------------------------------------------

    async def test_archived_flags_are_hidden_from_lists_and_routing(self, harness: FlagHarness, wf: str) -> None:
        old = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(old.flag_name, 100)
        new = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(new.flag_name, 100)
        await harness.store.archive_flag(new.flag_name)
        await harness.store.archive_flag(new.flag_name)  # a no-op the second time
        assert [f.info for f in await self.flags(harness, wf)] == [old]
        listed = await self.flags(harness, wf, include_archived=True)
        assert [(f.info, f.archived) for f in listed] == [(new, True), (old, False)]
        await harness.settle()
        assert await harness.store.route(wf, "order-1") == old
        assert await harness.store.route(wf, "order-1", is_test=True) == old

    async def test_archiving_an_unknown_flag_is_not_found(self, harness: FlagHarness, wf: str) -> None:
        with pytest.raises(NotFound):
            await harness.store.archive_flag(flag_name(wf, 0, "nope"))

    async def test_redeploying_an_archived_newest_version_revives_it_fresh(self, harness: FlagHarness, wf: str) -> None:
        await harness.store.apply_version_flag(wf, "v1")
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(v2.flag_name, 70)
        await harness.store.archive_flag(v2.flag_name)
        revived = await harness.store.apply_version_flag(wf, "v2")
        assert revived == v2
        [flag, _] = await self.flags(harness, wf)
        assert flag.info == v2 and flag.enabled and not flag.archived
        assert general_percent(flag) == 0  # a revival is a new deployment: it starts dark

    async def test_sequence_ids_are_never_reused_after_archiving_the_newest(
        self, harness: FlagHarness, wf: str
    ) -> None:
        await harness.store.apply_version_flag(wf, "v1")
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.archive_flag(v2.flag_name)
        assert_version(await harness.store.apply_version_flag(wf, "v3"), wf, 2, "v3")

    async def test_redeploying_an_archived_old_version_creates_a_new_flag(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.apply_version_flag(wf, "v2")
        await harness.store.archive_flag(v1.flag_name)  # what a finished migration does
        again = await harness.store.apply_version_flag(wf, "v1")
        assert_version(again, wf, 2, "v1")
        assert [f.info.seq_id for f in await self.flags(harness, wf)] == [2, 1]

    # -- redeploys (defect 17 and the roll-back by redeploy) ---------------------------------------------------

    async def test_redeploying_the_newest_version_keeps_its_percent(self, harness: FlagHarness, wf: str) -> None:
        await harness.store.apply_version_flag(wf, "v1")
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(v2.flag_name, 40)
        assert await harness.store.apply_version_flag(wf, "v2") == v2
        assert await self.percent(harness, v2.flag_name) == 40
        assert [f.info.seq_id for f in await self.flags(harness, wf)] == [1, 0]

    async def test_redeploying_an_older_version_makes_it_the_newest(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(v1.flag_name, 100)
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(v2.flag_name, 100)
        before = await self.flags(harness, wf)
        assert previous_version(before, "v1") == v2
        again = await harness.store.apply_version_flag(wf, "v1")
        assert_version(again, wf, 2, "v1")
        after = await self.flags(harness, wf)
        assert [f.info for f in after] == [again, v2, v1]
        assert general_percent(after[0]) == 0
        assert await self.percent(harness, v1.flag_name) == 100  # the old flag of v1 is untouched
        await harness.settle()
        assert await harness.store.route(wf, "order-1") == v2
        assert await harness.store.route(wf, "order-1", is_test=True) == again

    # -- routing ---------------------------------------------------------------------------------------------

    async def test_a_new_flag_takes_only_test_traffic(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.settle()
        assert await harness.store.route(wf, "order-1") is None
        assert await harness.store.route(wf, "order-1", is_test=True) == v1

    async def test_newest_enabled_flag_wins(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(v1.flag_name, 100)
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.settle()
        for workflow_id in WORKFLOW_IDS[:20]:
            assert await harness.store.route(wf, workflow_id) == v1
            assert await harness.store.route(wf, workflow_id, is_test=True) == v2
        await harness.store.set_general_percent(v2.flag_name, 100)
        await harness.settle()
        for workflow_id in WORKFLOW_IDS[:20]:
            assert await harness.store.route(wf, workflow_id) == v2

    async def test_a_partial_rollout_splits_ids_by_unleash_buckets(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(v1.flag_name, 100)
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(v2.flag_name, 30)
        await harness.settle()
        on_new = 0
        for workflow_id in WORKFLOW_IDS:
            expected = v2 if bucket(v2.flag_name, workflow_id) <= 30 else v1
            assert await harness.store.route(wf, workflow_id) == expected, workflow_id
            on_new += expected == v2
        assert 0 < on_new < len(WORKFLOW_IDS)

    async def test_a_disabled_flag_routes_nothing(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(v1.flag_name, 100)
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.store.set_general_percent(v2.flag_name, 100)
        await harness.human.set_flag_enabled(v2.flag_name, False)
        await harness.settle()
        assert await harness.store.route(wf, "order-1") == v1
        assert await harness.store.route(wf, "order-1", is_test=True) == v1
        assert [f.enabled for f in await self.flags(harness, wf)] == [False, True]

    async def test_deleting_every_strategy_switches_the_flag_off(self, harness: FlagHarness, wf: str) -> None:
        v1 = await harness.store.apply_version_flag(wf, "v1")
        await harness.store.set_general_percent(v1.flag_name, 100)
        v2 = await harness.store.apply_version_flag(wf, "v2")
        await harness.human.delete_strategy(v2.flag_name, GENERAL_TRAFFIC_TITLE)
        await harness.human.delete_strategy(v2.flag_name, DARK_DEPLOY_TITLE)
        await harness.settle()
        assert await harness.store.get_strategies(v2.flag_name) == []
        assert await harness.store.route(wf, "order-1", is_test=True) == v1
