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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from tests.command_line import DIACHRONIC
from tests.processes import process_alive
from typer.testing import CliRunner

from diachronic.devserver import PORT_OFFSETS, free_port
from diachronic.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


# The sample's worker, on the queue `deploy --worker-cmd` gives it (a version gets traffic only once a worker polls).
SAMPLE_WORKER = f"{sys.executable} -m examples.subscription.worker --version v1"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DIACHRONIC, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], subprocess.Popen[str], Path]]:
    """``diachronic dev`` in its own process, on a free port, with its own data folder given after the command."""
    data = tmp_path_factory.mktemp("dev")
    port = free_port(PORT_OFFSETS)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # the sample's worker, started by `deploy --worker-cmd`
        "DIACHRONIC_DATA_DIR": str(data),
        "DIACHRONIC_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
    }
    dev_env = {k: v for k, v in env.items() if k != "DIACHRONIC_DATA_DIR"}
    process = subprocess.Popen(
        [*DIACHRONIC, "dev", "--temporal-port", str(port), "--no-ui", "--http-port", "0", "--data-dir", str(data)],
        env=dev_env,
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
    deployed = run("deploy", "clidemo", "v1", "--worker-cmd", SAMPLE_WORKER, env=env)
    assert deployed.returncode == 0, deployed.stderr
    said = "clidemo v1 queued (position 1): the first version of clidemo: 100% of new starts go to it at once"
    assert said in deployed.stderr
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
        (["deploy", "clidemo", "v2", "--migrate-canary", "five"], "--migrate-canary 'five': expected a number"),
        (["deploy", "clidemo", "v2", "--migrate-canary", "120%"], "--migrate-canary '120%': a percentage must be"),
        (["deploy", "clidemo", "v2", "--canary-soak", "1m"], "--canary-query and --canary-soak need --migrate-canary"),
        (
            ["deploy", "clidemo", "v2", "--migrate-canary", "3", "--canary-query", 'Tier="a") OR (1=1'],
            "--canary-query 'Tier=\"a\") OR (1=1': a ')' closes nothing",
        ),
        (
            ["deploy", "clidemo", "v2", "--migrate-canary", "3", "--canary-query", "NoSuchAttribute = 3"],
            "--canary-query 'NoSuchAttribute = 3': Temporal refused it",
        ),
    ],
    ids=[
        "dot in version",
        "dot in workflow name",
        "a falling schedule",
        "continue when idle",
        "start with no version",
        "bad JSON input",
        "a canary that is no number",
        "a canary above 100 %",
        "a soak with no canary",
        "a cohort query that escapes its parentheses",
        "a cohort query the server refuses",
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


def test_data_dir_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DIACHRONIC_DATA_DIR", raising=False)
    assert load_settings().data_dir == Path(".diachronic")
    monkeypatch.setenv("DIACHRONIC_DATA_DIR", str(tmp_path / "env"))
    assert load_settings().data_dir == tmp_path / "env"
    assert load_settings(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"


def test_global_options_go_before_or_after_the_command_and_add_up(
    dev: tuple[dict[str, str], subprocess.Popen[str], Path],
) -> None:
    env, _, data = dev
    elsewhere = {k: v for k, v in env.items() if k != "DIACHRONIC_DATA_DIR"}  # .diachronic unless told
    before = run("--data-dir", str(data), "flags", "list", "clidemo", "--json", env=elsewhere)
    after = run("flags", "list", "clidemo", "--json", "--data-dir", str(data), env=elsewhere)
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout) != []

    flag = json.loads(before.stdout)[0]["info"]["flagName"]
    assert "All other traffic = 100%" in run("flags", "set-percent", flag, "100", env=env).stderr
    assert run("-q", "flags", "set-percent", flag, "100", env=env).stderr == ""
    assert run("flags", "set-percent", flag, "100", "-q", env=env).stderr == ""
    assert "All other traffic" in run("-q", "flags", "set-percent", flag, "100", "-v", env=env).stderr
    debug = "DEBUG asyncio: Using selector"  # asyncio's first debug line, in every command that runs async code
    assert debug in run("-v", "status", "clidemo", "-v", env=env).stderr
    assert debug not in run("-v", "status", "clidemo", env=env).stderr
    assert debug in run("status", "clidemo", env={**env, "DIACHRONIC_VERBOSE": "2"}).stderr


def test_command_options_are_read_from_their_variables(
    dev: tuple[dict[str, str], subprocess.Popen[str], Path],
) -> None:
    env, _, _ = dev
    steps = run("deploy", "clidemo", "v2", env={**env, "DIACHRONIC_DEPLOY_STEPS": "50@1s,10@1s"})
    assert steps.returncode == 1 and "must not go down" in steps.stderr
    bad_input = run("start", "clidemo", "--id", "x", env={**env, "DIACHRONIC_START_INPUT": "{"})
    assert bad_input.returncode == 1 and "--input is not valid JSON" in bad_input.stderr
    canary = run("deploy", "clidemo", "v2", env={**env, "DIACHRONIC_MIGRATE_CANARY": "0%"})
    assert canary.returncode == 1 and "--migrate-canary '0%'" in canary.stderr


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of typer's (vendored) click tree, with its path."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _variable(option: Any, path: tuple[str, ...]) -> str | None:
    """The variable an option reads: its own, else click's automatic one (``DIACHRONIC_<COMMAND>_<OPTION>``)."""
    if isinstance(option.envvar, str):
        return option.envvar
    if not option.allow_from_autoenv or option.name is None:
        return None
    return "_".join(["DIACHRONIC", *path, option.name]).upper().replace("-", "_")


def test_every_option_has_a_diachronic_variable_named_in_help() -> None:
    import diachronic.cli.k8s  # noqa: F401  (the sub-apps and commands register themselves)
    from diachronic.cli import app, control, dev, serve, simulate, status  # noqa: F401

    root = typer.main.get_command(app)
    commands = list(_commands(root))
    assert len(commands) >= 15
    runner = CliRunner()
    for path, command in [((), root), *commands]:
        shown = " ".join(runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}).output.split())
        for option in command.params:
            if option.param_type_name != "option" or option.name == "help":
                continue
            variable = _variable(option, path)
            if variable is None:  # a global option repeated after the command: its variable is read before it
                variable = "DIACHRONIC_" + option.name.removeprefix("global_").upper()
            assert variable.startswith("DIACHRONIC_"), (path, option.name)
            assert variable in shown, f"`diachronic {' '.join(path)} --help` does not name {variable}"


@pytest.mark.parametrize(
    ("flags", "position", "dark", "steps", "expected"),
    [
        ([], 1, False, None, "the first version of wf: 100% of new starts go to it at once"),
        (
            [("v0", 0)],
            1,
            False,
            None,
            "rollout, schedule 10@60s,20@60s,30@60s,40@60s,50@60s,60@60s,70@60s,80@60s,90@60s,100@60s from v0",
        ),
        (
            [("v0", 0)],
            1,
            True,
            "50@1s,100@1s",
            "dark deploy (only isTest traffic until `diachronic continue`), "
            "then rollout, schedule 50@1s,100@1s from v0",
        ),
        ([], 2, False, "100@5s", "after the 1 deployment(s) queued before it: rollout, schedule 100@5s"),
        (
            None,
            1,
            False,
            "100@5s",
            "100% of new starts at once if it is the first version of wf, else rollout, schedule 100@5s",
        ),
        (
            [("v1", 0)],
            1,
            False,
            None,
            "v1 already is the newest live version: nothing to deploy (--redeploy deploys it again)",
        ),
    ],
    ids=["initial", "rollout", "dark rollout", "behind another", "flags unreadable", "already live"],
)
def test_deploy_says_what_will_happen(
    flags: list[tuple[str, int]] | None, position: int, dark: bool, steps: str | None, expected: str
) -> None:
    from diachronic.ci.contracts import DeployAck, DeployOptions
    from diachronic.ci.planner.schedule import parse_steps
    from diachronic.cli.control import what_will_happen
    from diachronic.contracts import DeployEvent
    from diachronic.flags import VersionFlag
    from diachronic.versions import version_info

    event = DeployEvent(
        workflow_name="wf", version_id="v1", sha="s", environment="e", event_time=datetime.now(UTC), is_dark_deploy=dark
    )
    options = DeployOptions(steps=parse_steps(steps) if steps else None)
    found = None if flags is None else [VersionFlag(info=version_info("wf", seq, v), enabled=True) for v, seq in flags]
    assert what_will_happen(event, options, DeployAck(decision="accept", position=position), found) == expected


# Last: it stops the module's `diachronic dev`.
def test_dev_stops_everything_on_sigterm(dev: tuple[dict[str, str], subprocess.Popen[str], Path]) -> None:
    """Everything: the embedded Temporal, and the local workers that `deploy --worker-cmd` started against it."""
    env, process, _ = dev
    deployed = run("deploy", "subscription", "v1", "--worker-cmd", SAMPLE_WORKER, env=env)
    assert deployed.returncode == 0, deployed.stderr
    listed = json.loads(run("workers", "--json", env=env).stdout)
    assert "subscription.v1" in {w["name"] for w in listed}, listed
    assert all(w["running"] and process_alive(w["pid"]) for w in listed), listed

    port = int(env["DIACHRONIC_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert process.stderr is not None
    [stopped] = [line for line in process.stderr.read().splitlines() if line.startswith("stopped local workers: ")]
    assert set(stopped.removeprefix("stopped local workers: ").split(", ")) == {w["name"] for w in listed}
    assert not any(process_alive(w["pid"]) for w in listed), "a local worker outlived dev"
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "Temporal still serves after dev stopped"
