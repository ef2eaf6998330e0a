"""The ``diachronic`` command as a user runs it: real processes, the embedded Temporal, exit codes and messages."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diachronic.settings import load_settings

DIACHRONIC = [sys.executable, "-m", "diachronic.cli.__main__"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DIACHRONIC, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], subprocess.Popen[str], Path]]:
    """``diachronic dev`` in its own process, on free ports, with its own data folder."""
    data = tmp_path_factory.mktemp("dev")
    port = free_port()
    env = {**os.environ, "DIACHRONIC_DATA_DIR": str(data), "DIACHRONIC_TEMPORAL_ADDRESS": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [*DIACHRONIC, "dev", "--temporal-port", str(port), "--no-ui"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if "Ctrl-C" in line:
            break
    assert any(f"Temporal: 127.0.0.1:{port}" in line for line in lines), lines
    yield env, process, data
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_dev_persists_to_the_data_folder(dev: tuple[dict[str, str], subprocess.Popen[str], Path]) -> None:
    _, _, data = dev
    assert (data / "temporal.db").exists()


def test_deploy_status_and_start_through_the_cli(dev: tuple[dict[str, str], subprocess.Popen[str], Path]) -> None:
    env, _, _ = dev
    deployed = run("deploy", "clidemo", "v1", env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert "clidemo v1 queued (position 1)" in deployed.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = run("status", "clidemo", "--json", env=env)
        if status.returncode == 0 and json.loads(status.stdout)["phase"] == "completed":
            break
        time.sleep(0.3)
    body = json.loads(status.stdout)
    assert body["toVersion"]["versionId"] == "v1" and body["fromVersion"] is None and body["queued"] == []
    assert {"phase", "fromVersion", "toVersion", "rolloutPercent", "queued", "lastError"} <= set(body)
    started = run("start", "clidemo", "--id", "order-1", "--input", '{"a": 1}', env=env)
    assert started.returncode == 0, started.stderr
    workflow_id, run_id, queue = started.stdout.split()
    assert (workflow_id, queue) == ("order-1", "clidemo-v1") and run_id
    flags = run("flags", "list", "clidemo", "--json", env=env)
    assert json.loads(flags.stdout)[0]["info"]["flagName"] == "workflow.clidemo.seqId.000.version.v1"


def test_the_ci_worker_keeps_the_freezes(dev: tuple[dict[str, str], subprocess.Popen[str], Path]) -> None:
    env, _, _ = dev
    frozen = run("freeze", "clidemo", "--until", "+1h", "--reason", "incident 42", env=env)
    assert frozen.returncode == 0 and "clidemo frozen until" in frozen.stderr, frozen.stderr
    listed = run("freezes", "clidemo", "--json", env=env)
    assert [f["reason"] for f in json.loads(listed.stdout)] == ["incident 42"], listed.stderr
    lifted = run("unfreeze", "clidemo", env=env)
    assert lifted.returncode == 0 and "lifted: clidemo frozen until" in lifted.stderr, lifted.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "clidemo", "v.1"], "version id 'v.1' may only contain"),
        (["deploy", "bad.name", "v1"], "workflow name 'bad.name' may only contain"),
        (["deploy", "clidemo", "v2", "--steps", "50@1s,10@1s"], "must not go down: 10% comes after 50%"),
        (["continue", "clidemo"], "nothing is running"),
        (["start", "nothing-deployed", "--id", "x"], "nothing-deployed: no version of it is enabled"),
        (["start", "clidemo", "--id", "x", "--input", "{"], "--input is not valid JSON"),
    ],
    ids=[
        "dot in version",
        "dot in workflow name",
        "a falling schedule",
        "continue when idle",
        "start with no version",
        "bad JSON input",
    ],
)
def test_bad_input_gets_a_clear_error_and_exit_code_1(
    dev: tuple[dict[str, str], subprocess.Popen[str], Path], args: list[str], message: str
) -> None:
    env, _, _ = dev
    result = run(*args, env=env)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_stops_everything_on_sigterm(dev: tuple[dict[str, str], subprocess.Popen[str], Path]) -> None:
    env, process, _ = dev
    port = int(env["DIACHRONIC_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "Temporal still serves after dev stopped"


def test_data_dir_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DIACHRONIC_DATA_DIR", raising=False)
    assert load_settings().data_dir == Path(".diachronic")
    monkeypatch.setenv("DIACHRONIC_DATA_DIR", str(tmp_path / "env"))
    assert load_settings().data_dir == tmp_path / "env"
    assert load_settings(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"
