"""Pure Unleash evaluation of version flags, so the embedded store routes exactly as Unleash would.

What is modelled, checked against the engine inside ``UnleashClient`` (yggdrasil) in
``tests/test_flags_evaluation.py``:

- a flag is on iff it is enabled (in the environment) and, among its non-disabled strategies, ANY matches;
  a flag with no non-disabled strategy is on whenever it is enabled. That is Unleash's rule: the server
  drops disabled strategies from the client payload and the SDK treats an empty strategy list as "on".
  (The admin side then disables a flag whose last strategy is deleted or disabled; the local store does
  the same, see ``LocalFlagStore.delete_strategy``.)
- a strategy matches iff ALL its constraints match and then its own rule does: ``default`` is always on,
  ``flexibleRollout`` buckets the stickiness value; any other strategy name never matches.
- ``flexibleRollout``: ``rollout`` must be a whole number 0..100 written in decimal (yggdrasil rejects
  ``"33.5"`` or ``" 50"``, which then never match); ``groupId`` defaults to the flag name; stickiness
  ``default``/``userId`` uses the user id (always present here: the workflow id), ``random`` a random
  bucket, any other name the context property of that name (missing: no match). Enabled iff
  ``rollout > 0 and bucket <= rollout`` with ``bucket = murmur3_x86_32("<groupId>:<id>", 0) % 100 + 1``.
- constraints: ``IN``/``NOT_IN`` compare exactly (Unleash ignores ``caseInsensitive`` for them; a missing
  value is "not in"); ``STR_CONTAINS``/``STR_STARTS_WITH``/``STR_ENDS_WITH`` honour ``caseInsensitive``
  (a missing value never matches); ``inverted`` negates the result. Other operators (numbers, dates,
  semver) are not needed by version flags and never match, even inverted, as an operator the engine
  cannot evaluate.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence

import mmh3

from diachronic.errors import ConcurrentEdit, InvalidInput
from diachronic.flags import DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE, Constraint, FlagStrategy, VersionFlag
from diachronic.versions import sort_newest_first

__all__ = [
    "DARK_DEPLOY_CONSTRAINT",
    "bucket",
    "check_expected_percent",
    "choose",
    "constraint_matches",
    "context_properties",
    "default_strategies",
    "flag_enabled",
    "flag_reach",
    "general_percent",
    "general_strategy",
    "new_rollout",
    "rollout_percent",
    "strategy_matches",
    "validate_percent",
]

FLEXIBLE_ROLLOUT = "flexibleRollout"
_INTEGER = re.compile(r"^[+-]?[0-9]+$")

DARK_DEPLOY_CONSTRAINT = Constraint(
    context_name="isTest", operator="IN", values=["true"], case_insensitive=False, inverted=False
)
"""The constraint of the ``Dark Deploy Strategy``: only test traffic (context property ``isTest`` = ``true``)."""


def validate_percent(percent: int) -> int:
    """A general-traffic percentage: a whole number 0..100 (``InvalidInput`` otherwise)."""
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise InvalidInput(f"percent must be a whole number between 0 and 100, got {percent!r}")
    return percent


def new_rollout(
    flag_name: str, title: str, percent: int, constraints: Sequence[Constraint] = (), *, id: str = ""
) -> FlagStrategy:
    """A ``flexibleRollout`` as the original wrote it: stickiness ``default``, groupId = the flag name."""
    return FlagStrategy(
        id=id,
        name=FLEXIBLE_ROLLOUT,
        title=title,
        disabled=False,
        constraints=list(constraints),
        parameters={"rollout": str(validate_percent(percent)), "stickiness": "default", "groupId": flag_name},
    )


def default_strategies(flag_name: str, *, general_percent: int = 0) -> list[FlagStrategy]:
    """The strategies of every new version flag (docs/architecture.md), in this order; ids are left to the store.

    ``Dark Deploy Strategy``: isTest IN ["true"] at 100 %; ``All other traffic``: no constraint, at
    ``general_percent`` (0 for a new version).
    """
    return [
        new_rollout(flag_name, DARK_DEPLOY_TITLE, 100, [DARK_DEPLOY_CONSTRAINT]),
        new_rollout(flag_name, GENERAL_TRAFFIC_TITLE, general_percent),
    ]


def bucket(group_id: str, user_id: str) -> int:
    """Unleash's normalized bucket 1..100 of ``user_id`` in ``group_id`` (murmur3 x86 32-bit, seed 0)."""
    return int(mmh3.hash(f"{group_id}:{user_id}", 0, signed=False)) % 100 + 1


def rollout_percent(strategy: FlagStrategy) -> int | None:
    """The strategy's ``rollout`` as a whole percentage 0..100, or None when Unleash would not accept it."""
    raw = strategy.parameters.get("rollout")
    if raw is None or not _INTEGER.match(raw):
        return None
    value = int(raw)
    return value if 0 <= value <= 100 else None


def context_properties(is_test: bool) -> dict[str, str]:
    """The Unleash context properties of a routing decision: ``isTest`` as the string ``true``/``false``."""
    return {"isTest": "true" if is_test else "false"}


def _context_value(name: str, user_id: str, properties: Mapping[str, str]) -> str | None:
    if name == "userId":
        return user_id
    return properties.get(name)


def constraint_matches(constraint: Constraint, user_id: str, properties: Mapping[str, str]) -> bool:
    """One constraint, as Unleash evaluates it (see the module docstring for the operators)."""
    value = _context_value(constraint.context_name, user_id, properties)
    op = constraint.operator
    if op in ("IN", "NOT_IN"):
        found = value is not None and value in constraint.values
        result = found if op == "IN" else not found
    elif op in ("STR_CONTAINS", "STR_STARTS_WITH", "STR_ENDS_WITH"):
        if value is None:
            result = False
        else:
            values = constraint.values
            if constraint.case_insensitive:
                value, values = value.lower(), [v.lower() for v in values]
            if op == "STR_CONTAINS":
                result = any(v in value for v in values)
            elif op == "STR_STARTS_WITH":
                result = any(value.startswith(v) for v in values)
            else:
                result = any(value.endswith(v) for v in values)
    else:
        return False
    return not result if constraint.inverted else result


def _stickiness_value(stickiness: str, user_id: str, properties: Mapping[str, str]) -> str | None:
    if stickiness in ("default", "userId"):
        return user_id
    return properties.get(stickiness)


def strategy_matches(
    strategy: FlagStrategy, user_id: str, properties: Mapping[str, str], *, flag_name: str = ""
) -> bool:
    """Whether one (non-disabled) strategy is on for this context; ``flag_name`` is the default groupId."""
    if not all(constraint_matches(c, user_id, properties) for c in strategy.constraints):
        return False
    if strategy.name == "default":
        return True
    if strategy.name != FLEXIBLE_ROLLOUT:
        return False
    rollout = rollout_percent(strategy)
    if not rollout:
        return False
    group_id = strategy.parameters.get("groupId", flag_name)
    stickiness = strategy.parameters.get("stickiness", "default")
    if stickiness == "random":
        return random.randint(1, 100) <= rollout
    value = _stickiness_value(stickiness, user_id, properties)
    if value is None:
        return False
    return bucket(group_id, value) <= rollout


def flag_enabled(flag: VersionFlag, user_id: str, is_test: bool) -> bool:
    """Whether the flag is on for a workflow id; archived flags are never on (Unleash does not serve them)."""
    if flag.archived or not flag.enabled:
        return False
    active = [s for s in flag.strategies if not s.disabled]
    if not active:
        return True
    properties = context_properties(is_test)
    return any(strategy_matches(s, user_id, properties, flag_name=flag.info.flag_name) for s in active)


def _constraints(strategy: FlagStrategy, is_test: bool) -> bool | None:
    """True: every constraint holds for every id of this context; False: one never holds; None: it depends on the
    id (a constraint on something other than ``isTest``)."""
    properties = context_properties(is_test)
    verdict: bool | None = True
    for constraint in strategy.constraints:
        if constraint.context_name != "isTest":
            verdict = None
        elif not constraint_matches(constraint, "", properties):
            return False
    return verdict


def _strategy_reach(strategy: FlagStrategy, is_test: bool) -> tuple[bool, bool]:
    """(on for some id, on for every id) of one active strategy in one context."""
    constraints = _constraints(strategy, is_test)
    if constraints is False:
        return False, False
    if strategy.name == "default":
        return True, constraints is True
    if strategy.name != FLEXIBLE_ROLLOUT:
        return False, False
    rollout = rollout_percent(strategy) or 0
    return rollout > 0, constraints is True and rollout == 100 and strategy.parameters.get("stickiness") != "random"


def flag_reach(flag: VersionFlag, is_test: bool) -> tuple[bool, bool]:
    """(on for some workflow id, on for every workflow id) in one context (``isTest``), by Unleash's rules; exact,
    not sampled: whether a flag shields the older ones from every id of that context."""
    if flag.archived or not flag.enabled:
        return False, False
    active = [s for s in flag.strategies if not s.disabled]
    if not active:
        return True, True
    answers = [_strategy_reach(s, is_test) for s in active]
    return any(some for some, _ in answers), any(every for _, every in answers)


def choose(flags_newest_first: Iterable[VersionFlag], workflow_id: str, is_test: bool) -> VersionFlag | None:
    """The routing rule of docs/architecture.md: the newest (highest seq) flag that is on for the workflow id wins.

    The flags are re-sorted by sequence id (as numbers), so the answer does not depend on the caller's order.
    """
    for flag in sort_newest_first(flags_newest_first):
        if flag_enabled(flag, workflow_id, is_test):
            return flag
    return None


def general_strategy(strategies: Sequence[FlagStrategy]) -> FlagStrategy | None:
    """The ``flexibleRollout`` strategy titled ``All other traffic`` (disabled or not), if there is one."""
    for strategy in strategies:
        if strategy.name == FLEXIBLE_ROLLOUT and strategy.title == GENERAL_TRAFFIC_TITLE:
            return strategy
    return None


def general_percent(flag: VersionFlag | Sequence[FlagStrategy]) -> int | None:
    """The rollout of the ``All other traffic`` strategy; None if it is missing or its rollout is not valid.

    Whether that strategy is disabled is not considered here: ask ``general_strategy`` for that.
    """
    strategies = flag.strategies if isinstance(flag, VersionFlag) else flag
    strategy = general_strategy(strategies)
    return None if strategy is None else rollout_percent(strategy)


def check_expected_percent(flag_name: str, strategies: Sequence[FlagStrategy], expected: int) -> FlagStrategy:
    """The condition of a compare-and-set write, over the strategies as the store holds them: ``All other traffic``
    exists, is enabled and its rollout is exactly ``str(expected)`` (as Unleash's JSON Patch ``test`` compares).

    Returns that strategy; raises ``ConcurrentEdit`` (``found``: its rollout, None when it is gone) otherwise.
    Every store applies this same rule, its own way, at the moment it writes."""
    general = general_strategy(strategies)
    if general is None:
        raise ConcurrentEdit(f"{GENERAL_TRAFFIC_TITLE!r} of {flag_name} is gone (expected {expected}%)", found=None)
    found = rollout_percent(general)
    if general.disabled:
        raise ConcurrentEdit(
            f"{GENERAL_TRAFFIC_TITLE!r} of {flag_name} is disabled (expected {expected}%)", found=found
        )
    held = general.parameters.get("rollout")
    if held != str(expected):
        raise ConcurrentEdit(
            f"{GENERAL_TRAFFIC_TITLE!r} of {flag_name} holds {held!r}, not the {expected}% it was read at", found=found
        )
    return general
