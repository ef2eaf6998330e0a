"""``diachronic dev`` (embedded Temporal + CI worker + HTTP app) and ``diachronic worker`` (the CI worker alone)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from diachronic.cli import Context, app
from diachronic.cli.serve import serve_until_signalled
from diachronic.devserver import start_dev_server
from diachronic.errors import DiachronicError
from diachronic.settings import DEFAULT_TEMPORAL_PORT, Settings, load_settings
from diachronic.workers.local import LocalWorkers


@app.command()
def dev(
    ctx: typer.Context,
    temporal_port: Annotated[int, typer.Option(help="Port of the embedded Temporal")] = DEFAULT_TEMPORAL_PORT,
    flags: Annotated[
        Literal["local", "unleash"],
        typer.Option(envvar="DIACHRONIC_FLAGS", help="Flag store: local (embedded) or unleash"),
    ] = "local",
    ui: Annotated[bool, typer.Option(help="Serve Temporal's Web UI")] = True,
    http_port: Annotated[
        int,
        typer.Option(
            envvar="DIACHRONIC_HTTP_PORT",
            help="Port of the HTTP app (dashboard, webhook, signaler) on 127.0.0.1; 0 = no HTTP app",
        ),
    ] = 8080,
) -> None:
    """Run everything on this machine: Temporal dev server, CI worker, embedded flag store, local workers.

    Stopping it (Ctrl-C, SIGTERM) also stops the local workers of its data folder (`deploy --worker-cmd`)."""
    c: Context = ctx.obj
    try:  # waits until the frontend is healthy (not only its port open), with back-off, then one clear line
        server = start_dev_server(c.settings.data_dir, port=temporal_port, ui=ui)
    except DiachronicError as error:
        c.out.abort(error.message)
    try:
        settings = load_settings(data_dir=c.settings.data_dir, flags=flags, **server.connection_settings())
        c.out.success(f"Temporal: {server.address}")
        if ui:
            c.out.success(f"Web UI:   {server.ui_address}")
        c.out.info(f"data:     {settings.data_dir}   flags: {settings.flags}   CI task queue: {settings.ci_task_queue}")
        if http_port:
            c.out.success(f"dashboard: http://127.0.0.1:{http_port}/  (API: POST /webhooks/github, POST /instruction)")
        c.out.info(f"export DIACHRONIC_TEMPORAL_ADDRESS={server.address}")
        c.out.info(f"Ctrl-C stops everything, the local workers of {settings.data_dir} included.")
        http = ("127.0.0.1", http_port) if http_port else None
        c.run(serve_until_signalled(settings, ci_worker=True, http=http, dev=True))
    finally:
        _stop_local_workers(c, c.settings)  # the same data folder and worker backend as `settings`
        server.stop()
        c.out.info("stopped")


def _stop_local_workers(c: Context, settings: Settings) -> None:
    """The workers `deploy --worker-cmd` started against this Temporal: left running, they would only retry it."""
    if settings.workers != "local":
        return
    try:
        stopped = LocalWorkers(settings.workers_dir).stop_all_sync()
    except DiachronicError as error:
        c.out.warn(f"could not stop every local worker: {error.message}")
        return
    if stopped:
        c.out.info(f"stopped local workers: {', '.join(stopped)}")


@app.command()
def worker(ctx: typer.Context) -> None:
    """Run the CI worker against the configured Temporal (docs/production.md: TEMPORAL_* or a profile)."""
    c: Context = ctx.obj
    connection = c.connection()
    c.out.info(f"CI worker on {connection.describe()}, task queue {c.settings.ci_task_queue}")
    c.run(serve_until_signalled(c.settings, ci_worker=True, http=None))
