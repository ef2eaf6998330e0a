"""``diachronic serve``: the HTTP app (GitHub webhook, signaler, dashboard, /healthz) against the configured Temporal;
and ``serve_until_signalled``, how every long-running command (``serve``, ``worker``, ``dev``) runs until stopped."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from diachronic.cli import Context, app
from diachronic.errors import DiachronicError
from diachronic.process import stop_on_signals
from diachronic.settings import Settings


async def serve_until_signalled(
    settings: Settings, *, ci_worker: bool, http: tuple[str, int] | None, dev: bool = False
) -> None:
    """Run the CI worker and/or the HTTP app on ``http`` (host, port) until SIGINT or SIGTERM.

    One failing (e.g. its port is taken) stops the other; our typed error reaches the caller as it was raised."""
    stop = stop_on_signals()
    try:
        async with asyncio.TaskGroup() as group:
            if ci_worker:
                from diachronic.ci.worker import serve  # the worker's modules load only where it runs

                group.create_task(serve(settings, stop))
            if http is not None:
                from diachronic.http.server import serve_http  # FastAPI loads only where the HTTP app runs

                host, port = http
                group.create_task(serve_http(settings, host=host, port=port, stop=stop, dev=dev))
    except* DiachronicError as errors:
        raise errors.exceptions[0] from None


_DEFAULT_HOST = str(Settings.model_fields["http_host"].default)
_DEFAULT_PORT = str(Settings.model_fields["http_port"].default)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(envvar="DIACHRONIC_HTTP_HOST", help="Address to bind", show_default=_DEFAULT_HOST)
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="DIACHRONIC_HTTP_PORT", help="Port", show_default=_DEFAULT_PORT)
    ] = None,
) -> None:
    """Serve POST /webhooks/github, POST /instruction, the dashboard and GET /healthz (docs/http.md)."""
    c: Context = ctx.obj
    settings = c.settings
    host = host or settings.http_host
    port = settings.http_port if port is None else port
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        c.out.warn("DIACHRONIC_GITHUB_WEBHOOK_SECRET is not set: POST /webhooks/github refuses every delivery")
    if settings.signaler_token is None:
        c.out.warn("DIACHRONIC_SIGNALER_TOKEN is not set: anyone who reaches POST /instruction can start workflows")
    c.out.info(f"HTTP app on http://{host}:{port}  (Temporal {c.connection().describe()}, flags {settings.flags})")
    c.run(serve_until_signalled(settings, ci_worker=False, http=(host, port)))
