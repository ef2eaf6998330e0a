"""``python -m examples.subscription.worker_v2``: the v2 worker (same options as ``examples.subscription.worker``)."""

from __future__ import annotations

import sys

from diachronic.process import exit_with
from examples.subscription.worker import main

if __name__ == "__main__":
    exit_with(main(["--version", "v2", *sys.argv[1:]]))
