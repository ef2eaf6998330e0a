"""A monthly subscription in versions (``v1``, ``v2``, ``v3``) of one workflow type, ``subscription``.

v2 keeps its state in another shape (plan as an object, a renewal history) and gives a loyalty discount on
every 12th renewal; running v1 workflows move to v2 with the migrate SDK (``diachronic.migrate``). v3 is a broken
build that the gates stop (docs/gates.md); ``gate.py`` is the sample gate workflow.
"""

from __future__ import annotations

from diachronic import versions

WORKFLOW_NAME = "subscription"
VERSIONS = ("v1", "v2", "v3")


def task_queue(version: str, prefix: str = "") -> str:
    """The immutable task queue of a version (``diachronic.versions``); ``prefix`` keeps tests apart."""
    return versions.task_queue(f"{prefix}{WORKFLOW_NAME}", version)
