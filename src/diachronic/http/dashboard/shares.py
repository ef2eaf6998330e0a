"""Which share of new workflow starts each version receives, read from the flags alone.

Routing (``diachronic.flags.evaluation.choose``): the newest flag that is on for ``{userId: workflowId, isTest}``
wins. A flag's ``flexibleRollout`` buckets the id in its own ``groupId`` (the flag's name), so the buckets of two
flags are independent and the expected share of version *i* is exact:

    share_i = P(flag i on) * product over newer flags j of (1 - P(flag j on))

``P(flag on)`` is exact for what version flags hold (the Dark Deploy Strategy's ``isTest`` constraint, rollouts
with ``default``/``userId``/``random`` stickiness, ``default`` strategies, constraints on context properties).
When a hand edit makes it depend on the id in another way (a constraint on ``userId``, two flags sharing a
``groupId``), the shares are measured instead: the real evaluation over a fixed sample of ids (``sampled``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from diachronic.flags import DARK_DEPLOY_TITLE, VersionFlag
from diachronic.flags.evaluation import (
    FLEXIBLE_ROLLOUT,
    bucket,
    choose,
    constraint_matches,
    context_properties,
    rollout_percent,
)
from diachronic.versions import sort_newest_first

__all__ = ["SAMPLE_SIZE", "Shares", "has_dark_deploy", "routing_shares", "sampled_shares"]

SAMPLE_SIZE = 4000
_DIGITS = 2


@dataclass(frozen=True)
class Shares:
    """Percent of new starts per flag name (test traffic apart), and the share no version takes (a 404)."""

    method: Literal["exact", "sampled"]
    percent: dict[str, float]
    test_percent: dict[str, float]
    unrouted: float
    unrouted_test: float


def _on_probability(flag: VersionFlag, is_test: bool) -> tuple[float, frozenset[str]] | None:
    """P(the flag is on for a random id), and the bucket groups that make it partial; None: not computable."""
    if flag.archived or not flag.enabled:
        return 0.0, frozenset()
    active = [s for s in flag.strategies if not s.disabled]
    if not active:
        return 1.0, frozenset()
    properties = context_properties(is_test)
    groups: dict[str, float] = {}
    independent: list[float] = []
    for strategy in active:
        if any(c.context_name == "userId" for c in strategy.constraints):
            return None  # depends on the id itself
        if not all(constraint_matches(c, "", properties) for c in strategy.constraints):
            continue
        if strategy.name == "default":
            return 1.0, frozenset()
        if strategy.name != FLEXIBLE_ROLLOUT:
            continue
        rollout = rollout_percent(strategy)
        if not rollout:
            continue
        group = strategy.parameters.get("groupId", flag.info.flag_name)
        stickiness = strategy.parameters.get("stickiness", "default")
        if stickiness == "random":
            independent.append(rollout / 100)
        elif stickiness in ("default", "userId"):
            groups[group] = max(groups.get(group, 0.0), rollout / 100)  # one bucket per group: the widest wins
        else:
            value = properties.get(stickiness)
            if value is not None and bucket(group, value) <= rollout:
                return 1.0, frozenset()
    off = math.prod(1 - p for p in [*groups.values(), *independent])
    return 1 - off, frozenset(g for g, p in groups.items() if 0 < p < 1)


def _exact(newest_first: Sequence[VersionFlag], is_test: bool) -> tuple[list[float], float] | None:
    seen: set[str] = set()
    remaining = 1.0
    shares: list[float] = []
    for flag in newest_first:
        on = _on_probability(flag, is_test)
        if on is None:
            return None
        p, groups = on
        if groups & seen:
            return None  # two flags bucket ids in the same group: not independent
        seen |= groups
        shares.append(remaining * p)
        remaining *= 1 - p
    return shares, remaining


def _percent(value: float) -> float:
    return round(min(max(value * 100, 0.0), 100.0), _DIGITS)


def sampled_shares(flags: Sequence[VersionFlag], *, sample_size: int = SAMPLE_SIZE) -> Shares:
    """The real evaluation over ``sample_size`` fixed ids (``sample-0``...): what routing does, measured."""
    counts: dict[bool, dict[str, int]] = {False: {}, True: {}}
    unrouted = {False: 0, True: 0}
    for is_test in (False, True):
        for i in range(sample_size):
            chosen = choose(flags, f"sample-{i}", is_test)
            if chosen is None:
                unrouted[is_test] += 1
            else:
                name = chosen.info.flag_name
                counts[is_test][name] = counts[is_test].get(name, 0) + 1
    names = [f.info.flag_name for f in flags]
    return Shares(
        method="sampled",
        percent={n: _percent(counts[False].get(n, 0) / sample_size) for n in names},
        test_percent={n: _percent(counts[True].get(n, 0) / sample_size) for n in names},
        unrouted=_percent(unrouted[False] / sample_size),
        unrouted_test=_percent(unrouted[True] / sample_size),
    )


def routing_shares(flags: Sequence[VersionFlag], *, sample_size: int = SAMPLE_SIZE) -> Shares:
    """Expected percent of new starts (and of isTest starts) each flag receives: exact when the flags allow it,
    else sampled. Archived and disabled flags receive 0."""
    ordered = sort_newest_first(flags)
    general = _exact(ordered, is_test=False)
    test = _exact(ordered, is_test=True)
    if general is None or test is None:
        return sampled_shares(ordered, sample_size=sample_size)
    names = [f.info.flag_name for f in ordered]
    return Shares(
        method="exact",
        percent={n: _percent(p) for n, p in zip(names, general[0], strict=True)},
        test_percent={n: _percent(p) for n, p in zip(names, test[0], strict=True)},
        unrouted=_percent(general[1]),
        unrouted_test=_percent(test[1]),
    )


def has_dark_deploy(flag: VersionFlag) -> bool:
    """Whether the flag still has an active ``Dark Deploy Strategy`` (test traffic routed to it by ``isTest``)."""
    return any(s.title == DARK_DEPLOY_TITLE and not s.disabled for s in flag.strategies)
