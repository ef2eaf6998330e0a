"""The ``diachronic`` command: thin commands that parse, call the library, and render."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from diachronic.cli.output import Output
from diachronic.errors import DiachronicError
from diachronic.process import exit_with
from diachronic.settings import Settings, load_settings

if TYPE_CHECKING:
    from diachronic.temporal import TemporalConnection

T = TypeVar("T")

app = typer.Typer(
    name="diachronic",
    help="Continuous delivery for long-running Temporal workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class Context:
    settings: Settings
    out: Output

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run library code; our typed errors become one short message and exit code 1."""
        try:
            return asyncio.run(coro)
        except DiachronicError as error:
            self.out.abort(f"{error.message}")

    def connection(self) -> TemporalConnection:
        """How Temporal is reached (settings, TEMPORAL_*, temporal.toml); a bad configuration aborts in one line."""
        from diachronic.temporal import resolve_connection

        try:
            return resolve_connection(self.settings)
        except DiachronicError as error:
            self.out.abort(error.message)


_TEMPORAL = "Temporal connection (else TEMPORAL_* / temporal.toml, see docs/production.md)"


def seconds(c: Context, option: str, text: str | None) -> float | None:
    """A duration option in seconds (``30s``, ``10m``, ``2h``; a bare number is seconds); a bad one aborts, naming
    the option."""
    if text is None:
        return None
    from diachronic.signaler.instructions import parse_duration

    try:
        return parse_duration(text + "s" if text.strip().replace(".", "", 1).isdigit() else text).total_seconds()
    except ValueError as error:
        c.out.abort(f"invalid {option}: {error}")


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data folder [env var: DIACHRONIC_DATA_DIR; default .diachronic]"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens")] = False,
    temporal_address: Annotated[
        str | None,
        typer.Option(help="host:port", envvar="DIACHRONIC_TEMPORAL_ADDRESS", rich_help_panel=_TEMPORAL),
    ] = None,
    temporal_namespace: Annotated[
        str | None, typer.Option(envvar="DIACHRONIC_TEMPORAL_NAMESPACE", rich_help_panel=_TEMPORAL)
    ] = None,
    temporal_profile: Annotated[
        str | None,
        typer.Option(help="temporal.toml profile", envvar="DIACHRONIC_TEMPORAL_PROFILE", rich_help_panel=_TEMPORAL),
    ] = None,
    temporal_config_file: Annotated[
        Path | None,
        typer.Option(help="temporal.toml", envvar="DIACHRONIC_TEMPORAL_CONFIG_FILE", rich_help_panel=_TEMPORAL),
    ] = None,
    temporal_tls: Annotated[
        bool | None,
        typer.Option(
            "--temporal-tls/--no-temporal-tls",
            help="TLS on or off (default: on with an API key or a certificate)",
            envvar="DIACHRONIC_TEMPORAL_TLS",
            rich_help_panel=_TEMPORAL,
        ),
    ] = None,
    temporal_tls_ca: Annotated[
        Path | None,
        typer.Option(help="server CA (PEM)", envvar="DIACHRONIC_TEMPORAL_TLS_CA", rich_help_panel=_TEMPORAL),
    ] = None,
    temporal_tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="mTLS client certificate (PEM)", envvar="DIACHRONIC_TEMPORAL_TLS_CERT", rich_help_panel=_TEMPORAL
        ),
    ] = None,
    temporal_tls_key: Annotated[
        Path | None,
        typer.Option(help="its private key (PEM)", envvar="DIACHRONIC_TEMPORAL_TLS_KEY", rich_help_panel=_TEMPORAL),
    ] = None,
    temporal_tls_server_name: Annotated[
        str | None,
        typer.Option(
            help="name to check the server's certificate against",
            envvar="DIACHRONIC_TEMPORAL_TLS_SERVER_NAME",
            rich_help_panel=_TEMPORAL,
        ),
    ] = None,
) -> None:
    """The API key is read from DIACHRONIC_TEMPORAL_API_KEY, TEMPORAL_API_KEY or the profile, never from a flag
    (a command line is visible to every user of the machine)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    out = Output()
    try:
        settings = load_settings(
            data_dir=data_dir,
            temporal_address=temporal_address,
            temporal_namespace=temporal_namespace,
            temporal_profile=temporal_profile,
            temporal_config_file=temporal_config_file,
            temporal_tls=temporal_tls,
            temporal_tls_ca=temporal_tls_ca,
            temporal_tls_cert=temporal_tls_cert,
            temporal_tls_key=temporal_tls_key,
            temporal_tls_server_name=temporal_tls_server_name,
        )
    except ValueError as error:
        out.abort(f"invalid settings: {error}")
    ctx.obj = Context(settings=settings, out=out)


def main() -> None:
    import diachronic.cli.k8s  # noqa: F401  (the k8s sub-app registers itself)
    from diachronic.cli import (  # noqa: F401  (commands register themselves)
        control,
        dev,
        doctor,
        freeze,
        serve,
        simulate,
        status,
    )

    try:
        app()
    except SystemExit as done:
        exit_with(done.code)
    exit_with(0)
