"""A local receiver for notification tests: records every request it gets, and answers what a test scripts
(e.g. 503 twice, then 200), on a free loopback port."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from diachronic.http.server import running


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    url: str = ""
    got: list[Received] = field(default_factory=list)
    answers: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    def fail(self, path: str, *answers: tuple[int, dict[str, str]]) -> None:
        """Answer the next requests to ``path`` with these (status, headers), then 200 again."""
        self.answers.setdefault(path, []).extend(answers)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()

    app = FastAPI()

    @app.post("/{path:path}")
    async def record(request: Request) -> Response:
        box.got.append(
            Received(request.url.path, {k.lower(): v for k, v in request.headers.items()}, await request.body())
        )
        queued = box.answers.get(request.url.path)
        if queued:
            status, headers = queued.pop(0)
            return Response("no", status_code=status, headers=headers)
        return Response("ok")

    async with running(app) as server:
        box.url = f"http://127.0.0.1:{server.port}"
        yield box
