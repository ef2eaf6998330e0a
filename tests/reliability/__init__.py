"""Fault-injection suite: a deployment under faults loses nothing (issue 8). See docs/reliability.md."""
