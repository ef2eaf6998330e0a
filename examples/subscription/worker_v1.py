"""``python -m examples.subscription.worker_v1``: the v1 worker (same options as ``examples.subscription.worker``)."""

from __future__ import annotations

import sys

from diachronic.process import exit_with
from examples.subscription.worker import main

if __name__ == "__main__":
    exit_with(main(["--version", "v1", *sys.argv[1:]]))
