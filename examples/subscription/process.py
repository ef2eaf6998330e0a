"""Process edge helpers shared by the sample's entry points."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_with(code: int) -> NoReturn:
    """Leave without interpreter finalization: the Temporal core's threads can abort it (SIGABRT,
    "PyGILState_Release ... finalizing", temporalio/sdk-python#300), turning a clean stop into exit code -6."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
