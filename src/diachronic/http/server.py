"""Serve the app with uvicorn inside an asyncio program that owns its signals (the CLI, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Generator

import uvicorn
from fastapi import FastAPI

from diachronic.backends import open_flag_store
from diachronic.errors import ConfigError
from diachronic.http.app import create_app
from diachronic.settings import Settings
from diachronic.temporal import connect

__all__ = ["EmbeddedServer", "running", "serve_http"]

log = logging.getLogger(__name__)


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the program that embeds it decides when to stop
    (uvicorn would otherwise replace the handlers and re-raise SIGINT after shutting down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    @property
    def port(self) -> int:
        """The bound port (useful with port 0, which picks a free one)."""
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the server is not listening")


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # log_config=None: keep the embedding program's logging; no server header (one less fingerprint).
    return uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False, lifespan="on")


def _check_port_free(host: str, port: int) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ConfigError(f"cannot serve HTTP on {host}:{port}: {error.strerror}; choose another port") from None


@contextlib.asynccontextmanager
async def running(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[EmbeddedServer]:
    """Serve ``app`` in this event loop until the block ends; port 0 = a free port (see ``server.port``)."""
    _check_port_free(host, port)
    server = EmbeddedServer(_config(app, host, port))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                with contextlib.suppress(SystemExit):  # uvicorn exits the process on startup failures
                    task.result()
                raise ConfigError(f"the HTTP server on {host}:{port} did not start (see the log above)")
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(SystemExit):  # uvicorn exits the process on startup failures; not ours to do
            await task


async def serve_http(settings: Settings, *, host: str, port: int, stop: asyncio.Event, dev: bool = False) -> None:
    """Connect, open the flag store, serve the app on ``host:port`` until ``stop`` is set, close everything."""
    client = await connect(settings)
    flags = open_flag_store(settings)
    try:
        app = create_app(settings, client, flags, dev=dev)
        async with running(app, host=host, port=port) as server:
            log.info("HTTP app on http://%s:%d (webhook, signaler, /healthz, /openapi.json)", host, server.port)
            await stop.wait()
    finally:
        await flags.close()
