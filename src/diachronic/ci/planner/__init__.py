"""The CI's planner: every decision the CI takes, as pure functions over observed data.

One module per decision area:

- ``schedule``: rollout steps parsed, validated, defaulted;
- ``deploy``: a deploy arriving is accepted, or recognised as a duplicate;
- ``deployment``: one deployment, initial or a rollout from the previous version;
- ``rollout``: the rollout's step machine;
- ``migration``: which runs are eligible for the migrate signal, and what migration does next;
- ``retire``: when an old version may be retired.

Rules: no I/O, no ``workflow.*``, no clock (``now`` is passed in). The workflows gather observations through
activities, call a planner function and execute what it answers; activities only do I/O.
"""
