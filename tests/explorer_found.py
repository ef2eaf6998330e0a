"""Counter-examples the explorer found that the CI still fails, shrunk and printed by it (``diachronic explore``).
Each fails the catalog's judgement while its defect is there:

    python -m diachronic.cli simulate --catalog tests.explorer_found:FOUND     (from the repository's root)

Once a fix makes one pass (check the phases against the fixed behaviour), it moves into the catalog
(``simulation/scenarios.py``, section "found by the explorer"), where the counter-examples of defects 1, 2, 3 and 5
already are. A scenario keeps the name it was found with: routing depends on workflow ids, which derive from it. Not
collected by pytest (no ``test_`` prefix): until its fix lands a scenario here is expected to fail.
"""

from __future__ import annotations

from diachronic.ci.contracts import Phase
from diachronic.simulation.actions import Deploy, DisableGeneral, SetPercent, Start
from diachronic.simulation.runner import Scenario
from diachronic.simulation.stories import explored

# Found by the model of the CI (mode b), confirmed on the workflows, against the planner of the safety fixes: a person
# routes 100 % to v3, then disables v3's general strategy, so all general traffic goes back to v1; the retire rule
# takes the disabled strategy's 100 % for routing and archives v1's flag while it routes traffic
# (``planner.retire._routed`` looks at the percentage, not at whether the strategy is disabled).
GENERAL_DISABLED_AT_100 = explored(
    "explore-2-188",
    (
        "found by the explorer: routed-flag-archived: archived workflow.<wf>.seqId.000.version.v1 while it routes "
        "traffic"
    ),
    Start(running=1, finishing=1),
    [
        Deploy("v3"),
        SetPercent("v3", percent=100),
        DisableGeneral("v3"),
    ],
    phases=(Phase.STOPPED,),
)

FOUND: list[Scenario] = [GENERAL_DISABLED_AT_100]
