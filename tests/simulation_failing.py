"""A scenario that must fail (it expects a version the world never gets): ``diachronic simulate`` exits 1."""

from __future__ import annotations

from dataclasses import replace

from diachronic.ci.contracts import Phase
from diachronic.simulation.runner import Expect
from diachronic.simulation.scenarios import INITIAL

SCENARIOS = [replace(INITIAL, name="expects-too-much", expect=Expect(phases=(Phase.COMPLETED, Phase.COMPLETED)))]
