"""The embedded evaluation against Unleash's own engine (the one inside ``UnleashClient``, offline:
``tests/unleash_engine.py``)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from tests.unleash_engine import Engine

from diachronic.flags import DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE, Constraint, FlagStrategy, VersionFlag
from diachronic.flags.evaluation import (
    bucket,
    choose,
    constraint_matches,
    context_properties,
    default_strategies,
    flag_enabled,
    general_percent,
    general_strategy,
    rollout_percent,
    strategy_matches,
)
from diachronic.versions import version_info


def vflag(
    seq: int,
    version: str,
    *,
    general: int = 0,
    enabled: bool = True,
    archived: bool = False,
    strategies: list[FlagStrategy] | None = None,
    wf: str = "wf",
) -> VersionFlag:
    info = version_info(wf, seq, version)
    return VersionFlag(
        info=info,
        enabled=enabled,
        archived=archived,
        strategies=default_strategies(info.flag_name, general_percent=general) if strategies is None else strategies,
    )


def rollout(percent: str, *, group: str | None = "g", stickiness: str | None = "default", **kw: Any) -> FlagStrategy:
    params = {"rollout": percent}
    if group is not None:
        params["groupId"] = group
    if stickiness is not None:
        params["stickiness"] = stickiness
    return FlagStrategy(name="flexibleRollout", parameters=params, **kw)


def random_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_.:"
    return [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) if i % 2 else f"order-{rng.getrandbits(64)}"
        for i in range(n)
    ]


# -- bucketing -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group_id", "user_id"),
    [
        pytest.param("workflow.wf.seqId.000.version.v1", "order-1", id="a version flag and a workflow id"),
        pytest.param("g", "", id="an empty user id is hashed as it is"),
        pytest.param("", "u", id="an empty group id"),
        pytest.param("gr1", "123", id="numeric looking ids"),
        pytest.param("é", "ü", id="non-ascii text is hashed as utf-8"),
    ],
)
def test_bucket_is_in_range_and_stable(group_id: str, user_id: str) -> None:
    value = bucket(group_id, user_id)
    assert 1 <= value <= 100
    assert bucket(group_id, user_id) == value


@pytest.mark.parametrize("percent", [1, 10, 33, 50, 99])
def test_general_rollout_matches_unleash_on_10000_random_ids(
    percent: int, offline_unleash: Callable[[list[VersionFlag]], Engine]
) -> None:
    flag = vflag(0, "v1", general=percent)
    engine = offline_unleash([flag])
    ids = random_ids(10_000, seed=percent)
    for is_test in (False, True):
        props = context_properties(is_test)
        mismatches = [i for i in ids if flag_enabled(flag, i, is_test) != engine(flag.info.flag_name, i, props)]
        assert mismatches == []
    enabled = sum(flag_enabled(flag, i, False) for i in ids)
    assert abs(enabled / len(ids) - percent / 100) < 0.02  # murmur3 spreads ids evenly


@pytest.mark.parametrize("percent", [0, 100])
def test_the_ends_of_the_range(percent: int, offline_unleash: Callable[[list[VersionFlag]], Engine]) -> None:
    flag = vflag(0, "v1", general=percent)
    engine = offline_unleash([flag])
    ids = random_ids(500, seed=7)
    assert all(flag_enabled(flag, i, False) == bool(percent) for i in ids)
    assert all(engine(flag.info.flag_name, i, context_properties(False)) == bool(percent) for i in ids)


# -- strategies and constraints, table-driven, each case checked against the engine ------------------------------

IS_TEST = Constraint(context_name="isTest", operator="IN", values=["true"])

STRATEGY_CASES = [
    pytest.param([rollout("50")], id="plain 50 percent rollout"),
    pytest.param([rollout("50", group=None)], id="groupId defaults to the flag name"),
    pytest.param([rollout("50", group="")], id="an empty groupId is used as it is"),
    pytest.param([rollout("50", stickiness=None)], id="stickiness defaults to default"),
    pytest.param([rollout("50", stickiness="userId")], id="userId stickiness"),
    pytest.param([rollout("50", stickiness="tenant")], id="stickiness on a missing property never matches"),
    pytest.param([rollout("33.5")], id="a fractional rollout is invalid"),
    pytest.param([rollout(" 50")], id="a rollout with spaces is invalid"),
    pytest.param([rollout("+50")], id="a rollout with a plus sign is accepted"),
    pytest.param([rollout("050")], id="a rollout with a leading zero is accepted"),
    pytest.param([rollout("101")], id="a rollout above 100 is invalid"),
    pytest.param([rollout("-5")], id="a negative rollout never matches"),
    pytest.param([rollout("")], id="an empty rollout never matches"),
    pytest.param([FlagStrategy(name="flexibleRollout")], id="no parameters at all"),
    pytest.param([FlagStrategy(name="default")], id="the default strategy is on"),
    pytest.param([FlagStrategy(name="userWithId", parameters={"userIds": "a"})], id="unsupported strategies are off"),
    pytest.param([], id="an enabled flag without strategies is on"),
    pytest.param([rollout("100", disabled=True)], id="only disabled strategies count as none"),
    pytest.param([rollout("100", disabled=True), rollout("0")], id="a disabled strategy is ignored"),
    pytest.param([rollout("100", constraints=[IS_TEST])], id="the dark deploy strategy"),
    pytest.param([rollout("100", constraints=[IS_TEST]), rollout("30")], id="dark deploy plus 30 percent"),
    pytest.param(
        [rollout("100", constraints=[IS_TEST.model_copy(update={"inverted": True})])], id="an inverted isTest"
    ),
    pytest.param(
        [rollout("100", constraints=[IS_TEST.model_copy(update={"values": ["TRUE"], "case_insensitive": True})])],
        id="IN ignores caseInsensitive",
    ),
    pytest.param([rollout("100", constraints=[IS_TEST.model_copy(update={"operator": "NOT_IN"})])], id="NOT_IN"),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="tenant", operator="NOT_IN", values=["a"])])],
        id="NOT_IN on a missing property matches",
    ),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="tenant", operator="IN", values=["a"], inverted=True)])],
        id="an inverted IN on a missing property matches",
    ),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="isTest", operator="STR_CONTAINS", values=["ru"])])],
        id="STR_CONTAINS",
    ),
    pytest.param(
        [
            rollout(
                "100",
                constraints=[
                    Constraint(context_name="isTest", operator="STR_STARTS_WITH", values=["TR"], case_insensitive=True)
                ],
            )
        ],
        id="STR_STARTS_WITH case insensitive",
    ),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="isTest", operator="STR_ENDS_WITH", values=["UE"])])],
        id="STR_ENDS_WITH is case sensitive by default",
    ),
    pytest.param(
        [
            rollout(
                "100",
                constraints=[Constraint(context_name="tenant", operator="STR_CONTAINS", values=["a"], inverted=True)],
            )
        ],
        id="an inverted string operator on a missing property matches",
    ),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="isTest", operator="FOO", values=["x"], inverted=True)])],
        id="an unknown operator never matches, even inverted",
    ),
    pytest.param(
        [rollout("100", constraints=[Constraint(context_name="userId", operator="IN", values=["id-1", "id-7"])])],
        id="a constraint on userId reads the workflow id",
    ),
    pytest.param(
        [rollout("100", constraints=[IS_TEST, Constraint(context_name="userId", operator="IN", values=["id-1"])])],
        id="all constraints must match",
    ),
]


@pytest.mark.parametrize("strategies", STRATEGY_CASES)
@pytest.mark.parametrize("enabled", [True, False], ids=["flag on", "flag off"])
def test_strategy_semantics_match_unleash(
    strategies: list[FlagStrategy], enabled: bool, offline_unleash: Callable[[list[VersionFlag]], Engine]
) -> None:
    flag = vflag(0, "v1", strategies=strategies, enabled=enabled)
    engine = offline_unleash([flag])
    for user_id in [f"id-{i}" for i in range(200)]:
        for is_test in (False, True):
            expected = engine(flag.info.flag_name, user_id, context_properties(is_test))
            assert flag_enabled(flag, user_id, is_test) == expected, (user_id, is_test)


@pytest.mark.parametrize(
    ("constraint", "properties", "expected"),
    [
        pytest.param(IS_TEST, {"isTest": "true"}, True, id="isTest true is in"),
        pytest.param(IS_TEST, {"isTest": "false"}, False, id="isTest false is not in"),
        pytest.param(IS_TEST, {}, False, id="a missing isTest is not in"),
        pytest.param(IS_TEST, {"isTest": "True"}, False, id="IN compares exactly"),
        pytest.param(IS_TEST.model_copy(update={"inverted": True}), {"isTest": "true"}, False, id="inverted"),
    ],
)
def test_constraint_table(constraint: Constraint, properties: dict[str, str], expected: bool) -> None:
    assert constraint_matches(constraint, "id", properties) is expected


def test_random_stickiness_is_random_but_respects_the_ends() -> None:
    assert not strategy_matches(rollout("0", stickiness="random"), "u", {})
    assert strategy_matches(rollout("100", stickiness="random"), "u", {})


# -- flags and routing -----------------------------------------------------------------------------------------


def test_archived_and_disabled_flags_are_never_on() -> None:
    assert not flag_enabled(vflag(0, "v1", general=100, archived=True), "id", False)
    assert not flag_enabled(vflag(0, "v1", general=100, enabled=False), "id", True)


def test_new_version_flag_takes_test_traffic_only() -> None:
    flag = vflag(0, "v1", general=0)
    assert all(flag_enabled(flag, f"id-{i}", True) for i in range(100))
    assert not any(flag_enabled(flag, f"id-{i}", False) for i in range(100))


def chosen_seq(flags: list[VersionFlag], workflow_id: str, is_test: bool = False) -> int | None:
    found = choose(flags, workflow_id, is_test)
    return None if found is None else found.info.seq_id


@pytest.mark.parametrize(
    ("flags", "is_test", "expected"),
    [
        pytest.param([], False, None, id="no flags route nowhere"),
        pytest.param([vflag(0, "a", general=100)], False, 0, id="a single flag at 100 percent"),
        pytest.param([vflag(0, "a", general=0)], False, None, id="a single flag at 0 percent takes nothing"),
        pytest.param([vflag(0, "a", general=0)], True, 0, id="but it takes test traffic"),
        pytest.param([vflag(1, "b", general=100), vflag(0, "a", general=100)], False, 1, id="newest enabled wins"),
        pytest.param([vflag(1, "b", general=0), vflag(0, "a", general=100)], False, 0, id="falls through to older"),
        pytest.param([vflag(1, "b", general=0), vflag(0, "a", general=100)], True, 1, id="test traffic goes newest"),
        pytest.param(
            [vflag(1, "b", general=100, enabled=False), vflag(0, "a", general=100)], False, 0, id="disabled skipped"
        ),
        pytest.param(
            [vflag(1, "b", general=100, archived=True), vflag(0, "a", general=100)], False, 0, id="archived skipped"
        ),
        pytest.param(
            [vflag(999, "a", general=100), vflag(1000, "b", general=100)], False, 1000, id="seq 1000 beats 999"
        ),
        pytest.param(
            [vflag(0, "a", general=100), vflag(2, "c", general=100), vflag(1, "b", general=100)],
            False,
            2,
            id="the caller's order does not matter",
        ),
    ],
)
def test_choose(flags: list[VersionFlag], is_test: bool, expected: int | None) -> None:
    assert chosen_seq(flags, "order-1", is_test) == expected


def test_partial_rollout_splits_ids_like_unleash(offline_unleash: Callable[[list[VersionFlag]], Engine]) -> None:
    old, new = vflag(0, "a", general=100), vflag(1, "b", general=30)
    engine = offline_unleash([old, new])
    for workflow_id in random_ids(2000, seed=3):
        on_new = engine(new.info.flag_name, workflow_id, context_properties(False))
        assert chosen_seq([old, new], workflow_id) == (1 if on_new else 0)


# -- the general traffic strategy ------------------------------------------------------------------------------


def test_general_percent_reads_the_all_other_traffic_strategy() -> None:
    flag = vflag(0, "v1", general=42)
    assert general_percent(flag) == 42
    assert general_percent(flag.strategies) == 42
    general = general_strategy(flag.strategies)
    assert general is not None and general.title == GENERAL_TRAFFIC_TITLE


@pytest.mark.parametrize(
    ("strategies", "expected"),
    [
        pytest.param([], None, id="no strategies"),
        pytest.param([rollout("100", title=DARK_DEPLOY_TITLE)], None, id="only the dark deploy strategy"),
        pytest.param([rollout("7", title=GENERAL_TRAFFIC_TITLE, disabled=True)], 7, id="disabled still has a percent"),
        pytest.param([rollout("abc", title=GENERAL_TRAFFIC_TITLE)], None, id="an invalid rollout"),
        pytest.param([FlagStrategy(name="default", title=GENERAL_TRAFFIC_TITLE)], None, id="not a flexibleRollout"),
    ],
)
def test_general_percent_edge_cases(strategies: list[FlagStrategy], expected: int | None) -> None:
    assert general_percent(strategies) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("100", 100), ("007", 7), ("+5", 5), ("101", None), ("-1", None), ("1.5", None), (" 5", None)],
)
def test_rollout_percent(raw: str, expected: int | None) -> None:
    assert rollout_percent(rollout(raw)) == expected
