"""Fixtures of the fault-injection suite: the measurements file, a private Unleash, per-test folders.

Counts: ``DIACHRONIC_CHAOS_WORKFLOWS`` old workflows per test (40 by default, ``make chaos`` sets a few hundred).
Measurements: every test adds its row to ``DIACHRONIC_RELIABILITY_REPORT`` (default ``.diachronic/reliability.json``);
rows of tests that did not run this time are kept, so one test can be re-run alone.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.reliability.harness import COUNT, ROOT, SECRETS, PrivateUnleash, Report, dump_json
from tests.unleash_fixtures import unleash_required


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: fault-injection tests (real servers and processes, slow)")


def report_path() -> Path:
    path = Path(os.environ.get("DIACHRONIC_RELIABILITY_REPORT", ".diachronic/reliability.json"))
    return path if path.is_absolute() else ROOT / path


@pytest.fixture(scope="session")
def reliability_report() -> Iterator[Report]:
    report = Report()
    yield report
    if not report.rows:
        return
    path = report_path()
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    rows = {**(previous.get("rows") or {}), **report.rows}
    dump_json(
        path,
        {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "workflows_per_test": COUNT,
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "suite_wall_s": round(time.monotonic() - report.started, 1),
            "rows": rows,
        },
    )


@pytest.fixture(scope="session")
def private_unleash() -> Iterator[PrivateUnleash]:
    """Started on first use (scripts/unleash/unleash.sh installs what is missing, as for `make unleash`), stopped
    (PostgreSQL included) and removed at the end of the session."""
    if shutil.which("node") is None:
        message = "the private Unleash needs Node.js 20 (see docs/unleash.md)"
        if unleash_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = PrivateUnleash(SECRETS)
    try:
        server.start()
    except RuntimeError as error:
        server.close()
        if unleash_required():
            pytest.fail(f"the private Unleash did not start: {error}", pytrace=False)
        pytest.skip(f"the private Unleash did not start: {error}")
    yield server
    server.close()
