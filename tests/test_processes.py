"""The tests' own backstop: whatever a test started and left running is stopped when it ends, however it ends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.processes import children, process_alive, stop_leftovers

ROOT = Path(__file__).resolve().parent.parent
LEAKY_TEST = """
import subprocess, sys, time

import pytest

def spawn(path):
    # A process group that outlives the test: a leader and a grandchild, as a dev server or a worker would be.
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    code += "time.sleep(300)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    path.write_text(str(leader.pid))
    return leader

def test_leaks_and_passes(tmp_path_factory):
    spawn(tmp_path_factory.getbasetemp() / "passes.pid")

@pytest.mark.timeout(3)
def test_leaks_and_hangs(tmp_path_factory):
    spawn(tmp_path_factory.getbasetemp() / "hangs.pid")
    time.sleep(300)
"""


def test_a_leftover_process_group_is_stopped_whole() -> None:
    before = children()
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
    code += "print('ready', flush=True); time.sleep(300)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None and leader.stdout.readline().strip() == "ready"
    [grandchild] = children(leader.pid)
    [stopped] = stop_leftovers(before)
    assert stopped.pid == leader.pid
    leader.wait(timeout=10)
    assert not process_alive(grandchild.pid), "the leader's group was not stopped whole"


def test_a_test_that_leaks_errors_and_its_processes_are_stopped_even_after_a_timeout(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_leaky=LEAKY_TEST)
    result = pytester.runpytest_subprocess("-p", "tests.processes", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed") == 1 and outcomes.get("failed") == 1 and outcomes.get("errors") == 2, outcomes
    result.stdout.fnmatch_lines(["*the test left 1 process(es) running (stopped now)*"])
    base = pytester.path.parent  # getbasetemp() of the inner run: pytester's own folder holds its basetemp
    pids = [int(p.read_text()) for name in ("passes.pid", "hangs.pid") for p in base.rglob(name)]
    assert len(pids) == 2 and not any(process_alive(pid) for pid in pids), pids
