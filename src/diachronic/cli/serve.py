"""``diachronic serve``: the HTTP app (GitHub webhook, signaler, /healthz) against the configured Temporal."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from diachronic.cli import Context, app
from diachronic.http.server import serve_http
from diachronic.settings import Settings


async def _serve_until_signalled(settings: Settings, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_http(settings, host=host, port=port, stop=stop)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (env DIACHRONIC_HTTP_HOST; default 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (env DIACHRONIC_HTTP_PORT; default 8080)")] = None,
) -> None:
    """Serve POST /webhooks/github, POST /instruction and GET /healthz (docs/http.md)."""
    c: Context = ctx.obj
    settings = c.settings
    host = host or settings.http_host
    port = settings.http_port if port is None else port
    if settings.github_webhook_secret is None or not settings.github_webhook_secret.get_secret_value():
        c.out.warn("DIACHRONIC_GITHUB_WEBHOOK_SECRET is not set: POST /webhooks/github refuses every delivery")
    if settings.signaler_token is None:
        c.out.warn("DIACHRONIC_SIGNALER_TOKEN is not set: anyone who reaches POST /instruction can start workflows")
    c.out.info(f"HTTP app on http://{host}:{port}  (Temporal {c.connection().describe()}, flags {settings.flags})")
    c.run(_serve_until_signalled(settings, host, port))
