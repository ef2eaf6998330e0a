"""Counter-examples the explorer found against the CI before the fixes of the safety issue, shrunk and printed by it
(``diachronic explore``). Each fails the catalog's judgement while its defect is there:

    python -m diachronic.cli simulate --catalog tests.explorer_found:FOUND     (from the repository's root)

Once the fix of its defect makes one pass (check the phases against the fixed behaviour), it moves into the catalog
(``simulation/scenarios.py``). A scenario keeps the name it was found with: routing depends on workflow ids, which
derive from it. Not collected by pytest (no ``test_`` prefix): until its fix lands a scenario here is expected to fail.
"""

from __future__ import annotations

from diachronic.ci.contracts import Phase
from diachronic.simulation.actions import Deploy, Fail, RaceWrite, Start
from diachronic.simulation.runner import Scenario
from diachronic.simulation.stories import explored

# Defect 1: the cleanup of v1 (left by the non-migratory v3) retires v1 after its workflows ended, although v1 was
# deployed again meanwhile: it deletes the workers the new flag of v1 routes to.
ROLL_BACK_DELETES_LIVE_WORKERS = explored(
    "explore-11-57",
    ("found by the explorer: live-workers-deleted: deleting the workers of <wf>-v1: the flags route traffic to it"),
    Start(running=2, finishing=2),
    [
        Deploy("v3", kind="non-migratory"),
        Deploy("v1"),
    ],
    phases=(Phase.COMPLETED, Phase.COMPLETED),
)

# Defect 2: a person sets 10 % between the rollout's read (0 %) and its write; the write of 25 % lands on top.
EDIT_BETWEEN_READ_AND_WRITE = explored(
    "explore-11-1",
    (
        "found by the explorer: blind-write: rollout.<wf> set workflow.<wf>.seqId.001.version.v3 to 25% "
        "over 10%, a value it never read (it last saw 0%)"
    ),
    Start(running=5, finishing=1),
    [
        Deploy("v3"),
        RaceWrite("v3", percent=10),
    ],
    phases=(Phase.COMPLETED,),
)

# Defect 2, on the initial path: v1, live, deployed again as a dark deploy is an initial deployment; a person sets
# 0 % right before the CI's write of 100 %, which lands on top.
EDIT_BEFORE_THE_INITIAL_WRITE = explored(
    "explore-2-9",
    (
        "found by the explorer: blind-write: ci.<wf> set workflow.<wf>.seqId.000.version.v1 to 100% over 0%, "
        "a value it never read (it last saw 100%)"
    ),
    Start(running=2, finishing=1),
    [
        Deploy("v1", kind="dark"),
        RaceWrite("v1", percent=0),
    ],
    phases=(Phase.COMPLETED,),
)

# Defect 2 seen as a percentage going down: a person's 50 % replaced by the rollout's 10 %.
HUMAN_PERCENT_LOWERED = explored(
    "explore-11-3",
    ("found by the explorer: percent-down: rollout.<wf> lowered workflow.<wf>.seqId.002.version.v1 from 50% to 10%"),
    Start(running=3, finishing=3, ci_history=10),
    [
        Deploy("v2", poll_s=20.0),
        Deploy("v1", steps="10@20s,100@40s", poll_s=60.0),
        RaceWrite("v1", percent=50),
    ],
    phases=(Phase.COMPLETED, Phase.COMPLETED),
)

# Defect 3: v5's migration fails; the CI continues as new before v6 (tiny history) and forgets the failure.
FAILURE_FORGOTTEN_AT_CONTINUE_AS_NEW = explored(
    "explore-0-0",
    (
        "found by the explorer: failure-forgotten: the CI run completed although deployments failed: v5: "
        "FlagStoreError: flag-store-forbidden (simulated)"
    ),
    Start(running=3, ci_history=10),
    [
        Fail("flag-store-forbidden", activity="migrate_batch"),
        Deploy("v5"),
        Deploy("v6"),
    ],
    phases=(Phase.FAILED, Phase.COMPLETED),
)

# Defect 5: the migration fails at its first batch; the rollout raises the percentage for minutes more.
MIGRATION_FAILS_FIRST = explored(
    "explore-0-1",
    ("found by the explorer: child-outlived: migration.<wf> failed but rollout.<wf> ran on for 210 s"),
    Start(running=2, finishing=1),
    [
        Deploy("v2"),
        Fail("flag-store-forbidden", activity="migrate_batch"),
    ],
    phases=(Phase.FAILED,),
    ci_fails=True,
)

FOUND: list[Scenario] = [
    ROLL_BACK_DELETES_LIVE_WORKERS,
    EDIT_BETWEEN_READ_AND_WRITE,
    EDIT_BEFORE_THE_INITIAL_WRITE,
    HUMAN_PERCENT_LOWERED,
    FAILURE_FORGOTTEN_AT_CONTINUE_AS_NEW,
    MIGRATION_FAILS_FIRST,
]
