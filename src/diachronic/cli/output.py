"""All terminal output: messages to stderr, data to stdout; rich on a terminal, plain lines elsewhere.

``verbosity`` (``-v`` minus ``-q``) gates the messages: below 0 no information, below -1 no warnings either;
errors and data are always written."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console


class Output:
    def __init__(self, verbosity: int = 0) -> None:
        self.verbosity = verbosity
        self.err = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
        self.out = Console(highlight=False, markup=False, emoji=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            self.err.print(message)

    def success(self, message: str) -> None:
        if self.verbosity >= 0:
            self.err.print(message, style="green")

    def warn(self, message: str) -> None:
        if self.verbosity >= -1:
            self.err.print(message, style="yellow")

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.err.print(f"error: {message}", style="red")
        raise typer.Exit(code)

    def data(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def json(self, value: Any) -> None:
        if isinstance(value, BaseModel):
            self.data(value.model_dump_json())
        elif isinstance(value, list) and all(isinstance(v, BaseModel) for v in value):
            self.data("[" + ",".join(v.model_dump_json() for v in value) + "]")
        else:
            self.data(json.dumps(value, default=str))
