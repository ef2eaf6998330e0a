"""The ``diachronic`` command: thin commands that parse, call the library, and render.

Global options (``--data-dir``, counted ``-v`` / ``-q``) go before the command or after it
(``diachronic dev --data-dir D``). Every option can also come from a ``DIACHRONIC_*`` variable, named in ``--help``:
an option that sets a setting reads that setting's variable (``DIACHRONIC_DATA_DIR``, ``DIACHRONIC_HTTP_PORT``...),
every other one ``DIACHRONIC_<COMMAND>_<OPTION>`` (click's rule, e.g. ``DIACHRONIC_DEPLOY_STEPS``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.models import CommandFunctionType

from diachronic.cli.output import Output
from diachronic.errors import DiachronicError
from diachronic.process import exit_with
from diachronic.settings import Settings, load_settings

if TYPE_CHECKING:
    from diachronic.temporal import TemporalConnection

T = TypeVar("T")

ENV_PREFIX = "DIACHRONIC"
GLOBAL_PANEL = "Global options (also before the command)"
_DATA_DIR_HELP = "Data folder (default .diachronic)"
_VERBOSE_HELP = "More output: -v logs what happens, -vv debug logs"
_QUIET_HELP = "Less output: -q only warnings and errors, -qq only errors"


@dataclass
class Context:
    """What every command gets in ``ctx.obj``: the output and the settings, read once the options are known."""

    out: Output = field(default_factory=Output)
    data_dir: Path | None = None
    verbosity: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)  # the other global options, over their variables
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(data_dir=self.data_dir, **self.overrides)
            except ValueError as error:
                self.out.abort(f"invalid settings: {error}")
        return self._settings

    def apply_options(self, *, data_dir: Path | None, verbose: int, quiet: int) -> None:
        """Global options given after the command: a data folder wins over the one before it, counts add up."""
        if data_dir is not None:
            self.data_dir = data_dir
            self._settings = None
        self.verbosity += verbose - quiet
        self.out.verbosity = self.verbosity
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger().setLevel(_log_level(self.verbosity))

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


def _log_level(verbosity: int) -> int:
    if verbosity >= 2:
        return logging.DEBUG
    return {1: logging.INFO, 0: logging.WARNING, -1: logging.ERROR}.get(verbosity, logging.CRITICAL)


# The same options once more on every command, so that they may follow it. They read no variable of their own:
# the variables are read once, by the options before the command.
_AFTER_COMMAND: dict[str, tuple[Any, Any]] = {
    "global_data_dir": (
        Annotated[
            Path | None,
            typer.Option(
                "--data-dir",
                help=f"{_DATA_DIR_HELP} (env var: DIACHRONIC_DATA_DIR)",
                rich_help_panel=GLOBAL_PANEL,
                allow_from_autoenv=False,
            ),
        ],
        None,
    ),
    "global_verbose": (
        Annotated[
            int,
            typer.Option(
                "--verbose",
                "-v",
                count=True,
                help=f"{_VERBOSE_HELP} (env var: DIACHRONIC_VERBOSE)",
                rich_help_panel=GLOBAL_PANEL,
                allow_from_autoenv=False,
                show_default=False,
            ),
        ],
        0,
    ),
    "global_quiet": (
        Annotated[
            int,
            typer.Option(
                "--quiet",
                "-q",
                count=True,
                help=f"{_QUIET_HELP} (env var: DIACHRONIC_QUIET)",
                rich_help_panel=GLOBAL_PANEL,
                allow_from_autoenv=False,
                show_default=False,
            ),
        ],
        0,
    ),
}
_CONTEXT_PARAM = "global_ctx"


def _with_global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with the global options added to its signature (typer reads options from the signature)."""
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    context_param = next((p.name for p in params if p.annotation is typer.Context), None)
    added = dict(_AFTER_COMMAND)
    if context_param is None:
        context_param = _CONTEXT_PARAM
        added[_CONTEXT_PARAM] = (typer.Context, inspect.Parameter.empty)

    @functools.wraps(command)
    def with_options(*args: Any, **kwargs: Any) -> Any:
        ctx: typer.Context = kwargs[context_param]
        if context_param == _CONTEXT_PARAM:
            del kwargs[_CONTEXT_PARAM]
        options = {name: kwargs.pop(name) for name in _AFTER_COMMAND}
        c: Context = ctx.obj
        c.apply_options(
            data_dir=options["global_data_dir"], verbose=options["global_verbose"], quiet=options["global_quiet"]
        )
        return command(*args, **kwargs)

    keyword = inspect.Parameter.KEYWORD_ONLY
    params += [inspect.Parameter(n, keyword, annotation=a, default=d) for n, (a, d) in added.items()]
    with_options.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in params}
    del with_options.__wrapped__  # typer must see the new signature, not the old one
    return with_options


class App(typer.Typer):
    """A typer app whose commands all accept the global options after the command name."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[CommandFunctionType], CommandFunctionType]:
        register = super().command(*args, **kwargs)

        def decorator(command: CommandFunctionType) -> CommandFunctionType:
            register(_with_global_options(command))
            return command

        return decorator


app = App(
    name="diachronic",
    help="Continuous delivery for long-running Temporal workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"auto_envvar_prefix": ENV_PREFIX},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", envvar="DIACHRONIC_DATA_DIR", help=_DATA_DIR_HELP)
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, envvar="DIACHRONIC_VERBOSE", help=_VERBOSE_HELP, show_default=False
        ),
    ] = 0,
    quiet: Annotated[
        int, typer.Option("--quiet", "-q", count=True, envvar="DIACHRONIC_QUIET", help=_QUIET_HELP, show_default=False)
    ] = 0,
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
    overrides = {
        "temporal_address": temporal_address,
        "temporal_namespace": temporal_namespace,
        "temporal_profile": temporal_profile,
        "temporal_config_file": temporal_config_file,
        "temporal_tls": temporal_tls,
        "temporal_tls_ca": temporal_tls_ca,
        "temporal_tls_cert": temporal_tls_cert,
        "temporal_tls_key": temporal_tls_key,
        "temporal_tls_server_name": temporal_tls_server_name,
    }
    ctx.obj = Context(data_dir=data_dir, verbosity=verbose - quiet, overrides=overrides)


def main() -> None:
    import diachronic.cli.k8s  # noqa: F401  (the k8s sub-app registers itself)
    from diachronic.cli import (  # noqa: F401  (commands register themselves)
        control,
        dev,
        doctor,
        explore,
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
