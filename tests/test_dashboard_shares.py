"""The share of new starts each version receives, as the dashboard shows it: exact from the percentages when the
flags allow it, measured by the real evaluation otherwise; the exact figures must agree with the evaluation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diachronic.flags import Constraint, VersionFlag
from diachronic.flags.evaluation import default_strategies, new_rollout
from diachronic.http.dashboard.shares import has_dark_deploy, routing_shares, sampled_shares
from diachronic.versions import version_info

WF = "orders"


def flag(seq: int, percent: int, *, archived: bool = False, enabled: bool = True, dark: bool = True) -> VersionFlag:
    info = version_info(WF, seq, f"v{seq}")
    strategies = default_strategies(info.flag_name, general_percent=percent)
    if not dark:
        strategies = [
            s.model_copy(update={"disabled": True}) if s.title == "Dark Deploy Strategy" else s for s in strategies
        ]
    return VersionFlag(info=info, enabled=enabled, archived=archived, strategies=strategies)


def by_version(percent: dict[str, float]) -> dict[str, float]:
    return {name.rsplit(".", 1)[1]: value for name, value in percent.items()}


def test_no_version_routes_nothing() -> None:
    shares = routing_shares([])
    assert shares.method == "exact" and shares.unrouted == 100.0 and shares.unrouted_test == 100.0


def test_an_initial_deployment_takes_everything() -> None:
    shares = routing_shares([flag(0, 100)])
    assert by_version(shares.percent) == {"v0": 100.0} and by_version(shares.test_percent) == {"v0": 100.0}
    assert shares.unrouted == 0.0


def test_mid_rollout_the_newest_takes_its_percent_and_all_test_traffic() -> None:
    shares = routing_shares([flag(0, 100), flag(1, 30)])
    assert by_version(shares.percent) == {"v1": 30.0, "v0": 70.0}
    assert by_version(shares.test_percent) == {"v1": 100.0, "v0": 0.0}


def test_a_dark_deploy_takes_only_test_traffic() -> None:
    shares = routing_shares([flag(0, 100), flag(1, 0)])
    assert by_version(shares.percent) == {"v1": 0.0, "v0": 100.0}
    assert by_version(shares.test_percent) == {"v1": 100.0, "v0": 0.0}


def test_newest_wins_over_three_versions_and_the_rest_is_unrouted() -> None:
    shares = routing_shares([flag(2, 20), flag(0, 60), flag(1, 50)])  # any order in, newest first inside
    assert by_version(shares.percent) == {"v2": 20.0, "v1": 40.0, "v0": 24.0}
    assert shares.unrouted == 16.0


def test_archived_and_disabled_flags_receive_nothing() -> None:
    shares = routing_shares([flag(0, 100, archived=True), flag(1, 100, enabled=False), flag(2, 40, dark=False)])
    assert by_version(shares.percent) == {"v2": 40.0, "v1": 0.0, "v0": 0.0}
    assert by_version(shares.test_percent) == {"v2": 40.0, "v1": 0.0, "v0": 0.0}
    assert shares.unrouted == 60.0 and shares.unrouted_test == 60.0


def test_a_constraint_on_the_id_is_measured_with_the_real_evaluation() -> None:
    v0, v1 = flag(0, 100), flag(1, 0)
    ends_in_7 = Constraint(context_name="userId", operator="STR_ENDS_WITH", values=["7"])
    only_some = new_rollout(v1.info.flag_name, "hand edit", 100, [ends_in_7])
    v1 = v1.model_copy(update={"strategies": [*v1.strategies, only_some]})
    shares = routing_shares([v0, v1])
    assert shares.method == "sampled"
    assert by_version(shares.percent) == {"v1": 10.0, "v0": 90.0}  # sample-0..3999: exactly one in ten ends in 7


def shared_group(seq: int, percent: int) -> VersionFlag:
    info = version_info(WF, seq, f"v{seq}")
    strategy = new_rollout(info.flag_name, "hand edit", percent).model_copy(
        update={"parameters": {"rollout": str(percent), "stickiness": "default", "groupId": "shared"}}
    )
    return VersionFlag(info=info, enabled=True, strategies=[strategy])


def test_two_flags_bucketing_in_one_group_are_measured() -> None:
    shares = routing_shares([shared_group(0, 70), shared_group(1, 50)])
    assert shares.method == "sampled"
    # One bucket for both: ids in buckets 1..50 go to v1, 51..70 to v0 (independent buckets would give v0 35 %).
    assert by_version(shares.percent) == pytest.approx({"v1": 50.0, "v0": 20.0}, abs=3.0)
    assert shares.unrouted == pytest.approx(30.0, abs=3.0)


def test_the_dark_deploy_strategy_is_reported() -> None:
    assert has_dark_deploy(flag(0, 100)) and not has_dark_deploy(flag(0, 100, dark=False))


@st.composite
def flag_sets(draw: st.DrawFn) -> list[VersionFlag]:
    count = draw(st.integers(1, 4))
    percents = st.sampled_from([0, 1, 10, 25, 33, 50, 75, 99, 100])
    return [
        flag(
            seq,
            draw(percents),
            archived=draw(st.booleans()) and seq < count - 1,
            enabled=draw(st.integers(0, 4)) > 0,
            dark=draw(st.booleans()),
        )
        for seq in range(count)
    ]


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(flags=flag_sets())
def test_exact_shares_agree_with_the_real_evaluation(flags: list[VersionFlag]) -> None:
    exact = routing_shares(flags)
    measured = sampled_shares(flags, sample_size=4000)
    assert exact.method == "exact"
    for name in exact.percent:
        assert exact.percent[name] == pytest.approx(measured.percent[name], abs=3.0), name
        assert exact.test_percent[name] == pytest.approx(measured.test_percent[name], abs=3.0), name
    assert sum(exact.percent.values()) + exact.unrouted == pytest.approx(100.0, abs=0.05)
    assert sum(exact.test_percent.values()) + exact.unrouted_test == pytest.approx(100.0, abs=0.05)
