"""Process exit for entry points that used Temporal clients or workers."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_with(code: int | str | None) -> NoReturn:
    """Flush and leave without interpreter finalization: temporalio's core threads can abort it (SIGABRT)."""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
