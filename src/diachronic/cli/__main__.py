"""``python -m diachronic.cli``."""

from __future__ import annotations

from diachronic.cli import main

main()
