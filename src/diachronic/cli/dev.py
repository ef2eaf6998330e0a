"""``diachronic dev`` (embedded Temporal + CI worker) and ``diachronic worker`` (the CI worker alone)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from diachronic.ci.worker import serve
from diachronic.cli import Context, app
from diachronic.devserver import start_dev_server
from diachronic.errors import DiachronicError
from diachronic.settings import DEFAULT_TEMPORAL_PORT, Settings, load_settings


async def _serve_until_signalled(settings: Settings, http_port: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not http_port:
        await serve(settings, stop)
        return
    from diachronic.http.server import serve_http  # FastAPI loads only where the HTTP app runs

    try:
        async with asyncio.TaskGroup() as group:  # one failing (e.g. the port is taken) stops the other
            group.create_task(serve(settings, stop))
            group.create_task(serve_http(settings, host="127.0.0.1", port=http_port, stop=stop, dev=True))
    except* DiachronicError as errors:
        raise errors.exceptions[0] from None


@app.command()
def dev(
    ctx: typer.Context,
    temporal_port: Annotated[int, typer.Option(help="Port of the embedded Temporal")] = DEFAULT_TEMPORAL_PORT,
    flags: Annotated[str, typer.Option(help="Flag store: local (embedded) or unleash")] = "local",
    ui: Annotated[bool, typer.Option(help="Serve Temporal's Web UI")] = True,
    http_port: Annotated[
        int, typer.Option(help="Port of the HTTP app (webhook, signaler) on 127.0.0.1; 0 = no HTTP app")
    ] = 8080,
) -> None:
    """Run everything on this machine: Temporal dev server, CI worker, embedded flag store, local workers."""
    c: Context = ctx.obj
    try:  # waits until the frontend is healthy (not only its port open), with back-off, then one clear line
        server = start_dev_server(c.settings.data_dir, port=temporal_port, ui=ui)
    except DiachronicError as error:
        c.out.abort(error.message)
    try:
        settings = load_settings(data_dir=c.settings.data_dir, flags=flags, **server.connection_settings())
    except ValueError as error:
        server.stop()
        c.out.abort(f"invalid --flags: {error}")
    try:
        c.out.success(f"Temporal: {server.address}")
        if ui:
            c.out.success(f"Web UI:   {server.ui_address}")
        c.out.info(f"data:     {settings.data_dir}   flags: {settings.flags}   CI task queue: {settings.ci_task_queue}")
        if http_port:
            c.out.success(f"dashboard: http://127.0.0.1:{http_port}/  (API: POST /webhooks/github, POST /instruction)")
        c.out.info(f"export DIACHRONIC_TEMPORAL_ADDRESS={server.address}")
        c.out.info("Ctrl-C stops everything.")
        c.run(_serve_until_signalled(settings, http_port))
    finally:
        server.stop()
        c.out.info("stopped")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the CI worker against the configured Temporal (docs/production.md: TEMPORAL_* or a profile)."""
    c: Context = ctx.obj
    connection = c.connection()
    c.out.info(f"CI worker on {connection.describe()}, task queue {c.settings.ci_task_queue}")
    c.run(_serve_until_signalled(c.settings))
