"""The CI's planner: every decision the CI takes, as pure functions over observed data.

One module per decision area (each module's docstring shows the loop that executes its plans):

- ``schedule``: rollout steps parsed, validated (non-decreasing 0-100, a final 100 step), defaulted;
- ``deploy``: a deploy arriving: accepted, a duplicate, stale, or refused (``classify_deploy``);
- ``deployment``: a deployment's start (refuse, duplicate, initial, rollout), its children (whichever ends first
  decides; a human's cancel or abort), an abort's write, whether the run fails;
- ``rollout``: the step machine (``plan_rollout``): start, write on the value read, wait, stop, complete;
- ``migration``: which runs are eligible for the migrate signal (``select_runs``, shared with the simulation), and
  what migration does once the old queue drained (``after_drain``);
- ``sweep``: how the migration reads the old queue (a cursor), and when it reads it again (``next_sweep``);
- ``retire``: hold, or retire an old version: archive its flag, delete or keep its workers (``plan_retire``);
- ``freeze``, ``retire_delay``, ``notifications``: the delivery pipeline's decisions (issue 16).

The shape, for every module: a function takes one frozen snapshot (observed data plus the workflow's state,
``now`` included when time matters) and returns a frozen, data-only plan. A plan's ``branch`` names the answer
(an enum member) for the simulation's coverage; a hold or blocker is an enum member whose value is the reason the
status shows. When something is unknown the plan holds: nothing is written, archived or deleted on a guess.

Rules: no I/O, no ``workflow.*``, no clock (``now`` is passed in). The workflows gather observations through
activities, call a planner function and execute what it answers; activities only do I/O. New decisions go in new
modules here, with table-driven tests (``tests/test_planner_<module>.py``, factories in ``tests/planner_factories.py``).
"""
