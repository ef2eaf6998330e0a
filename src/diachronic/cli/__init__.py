"""The ``diachronic`` command: thin commands that parse, call the library, and render."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from diachronic.cli.output import Output
from diachronic.errors import DiachronicError
from diachronic.process import exit_with
from diachronic.settings import Settings, load_settings

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


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data folder [env var: DIACHRONIC_DATA_DIR; default .diachronic]"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    out = Output()
    try:
        settings = load_settings(data_dir=data_dir)
    except ValueError as error:
        out.abort(f"invalid settings: {error}")
    ctx.obj = Context(settings=settings, out=out)


def main() -> None:
    import diachronic.cli.k8s  # noqa: F401  (the k8s sub-app registers itself)
    from diachronic.cli import control, dev, explore, serve, simulate, status  # noqa: F401  (commands register themselves)

    try:
        app()
    except SystemExit as done:
        exit_with(done.code)
    exit_with(0)
