"""The dashboard's routes: the page at ``/`` (files shipped in ``diachronic/http/static``) and its JSON API.

Reads are open; controls need ``Authorization: Bearer <DIACHRONIC_SIGNALER_TOKEN>`` when that token is set
(checked in constant time, before the body is read). A refused control answers 422 with the CI's own words.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.responses import Response
from temporalio.client import Client

from diachronic.ci import client as ci
from diachronic.ci.freeze import list_freezes
from diachronic.ci.planner.freeze import Freeze, window_freezes
from diachronic.contracts import MAX_NAME_LENGTH, NAME_PATTERN
from diachronic.errors import DiachronicError, TimedOut
from diachronic.flags import FlagStore
from diachronic.http.auth import BearerToken
from diachronic.http.dashboard.models import (
    ControlName,
    ControlRequest,
    ControlResult,
    Unavailable,
    WorkflowList,
    WorkflowView,
)
from diachronic.http.dashboard.reads import Coalesced, read_names, read_view
from diachronic.http.responses import error_responses, json_response
from diachronic.settings import Settings
from diachronic.signaler.errors import InvalidInstruction
from diachronic.temporal_errors import temporal_errors

__all__ = ["CONTROL_TIMEOUT_S", "PAGE_HEADERS", "STATIC_DIR", "ReadAll", "install_dashboard"]

STATIC_DIR = FilePath(__file__).resolve().parent.parent / "static"
CONTROL_TIMEOUT_S = 10.0
FRESH_S = 0.5  # many viewers share one read per workflow per half second
VIEW_BUDGET_S = 1.0  # the list answers within about this, whatever one CI does
DETAIL_BUDGET_S = 5.0
NAMES_BUDGET_S = 3.0
READ_TIMEOUT_S = 45.0  # Temporal gives up on a query to a worker-less workflow after ~30 s

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

WorkflowName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN.pattern,
        max_length=MAX_NAME_LENGTH,
        description="the workflow name (letters, digits, '-' and '_')",
    ),
]
Control = Annotated[ControlName, Path(description="what the CLI's control commands do")]

_TEXTS = {
    400: "invalid request: `problems` names each bad field",
    401: "missing or wrong bearer token (controls need DIACHRONIC_SIGNALER_TOKEN when it is set)",
    404: "no CI workflow of this name (or none running, for a control)",
    413: "request body too large",
    422: "the CI refused the control: `message` says why (its validator's words)",
    503: "Temporal or the flag store is unavailable; retry later",
    504: "the CI did not answer in time (is the CI worker running?)",
}


def _problems(error: ValidationError) -> InvalidInstruction:
    fields = [(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in error.errors()]
    return InvalidInstruction(fields)


ReadAll = Callable[[], Awaitable[tuple[list[WorkflowView], list[Unavailable]]]]
"""Every workflow's view, and those whose status cannot be read now (shared reads: see ``reads.Coalesced``)."""


def install_dashboard(app: FastAPI, settings: Settings, client: Client, flags: FlagStore) -> ReadAll:
    """Add the page, its files and ``/api/workflows...`` to ``app`` (the same app as the webhook and signaler);
    returns the reads behind ``GET /api/workflows``, for ``/metrics`` to share."""
    token = BearerToken(settings.signaler_token)
    index = (STATIC_DIR / "index.html").read_bytes()

    async def view(name: str) -> WorkflowView:
        return await read_view(client, flags, name)

    async def names(_: str) -> list[str]:
        return await read_names(client)

    async def stored_freezes(_: str) -> list[Freeze]:
        return await list_freezes(client)

    views = Coalesced(view, fresh_s=FRESH_S, timeout_s=READ_TIMEOUT_S, what="status of")
    listing = Coalesced(names, fresh_s=FRESH_S, timeout_s=READ_TIMEOUT_S, what="list of workflows")
    freeze_listing = Coalesced(stored_freezes, fresh_s=FRESH_S, timeout_s=READ_TIMEOUT_S, what="freezes")

    async def freezes_in_force() -> tuple[list[Freeze], str | None]:
        now = datetime.now(UTC)
        windows = window_freezes(now, settings.freeze_windows)
        stored = await freeze_listing.get("", budget_s=VIEW_BUDGET_S)
        if stored is None:
            return windows, "reading the freezes is taking long"
        if isinstance(stored, DiachronicError):
            return windows, stored.message
        return [f for f in stored if f.until > now] + windows, None

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            try:
                yield state
            finally:
                await views.close()
                await listing.close()
                await freeze_listing.close()

    app.router.lifespan_context = lifespan

    async def read_all() -> tuple[list[WorkflowView], list[Unavailable]]:
        found = await listing.get("", budget_s=NAMES_BUDGET_S)
        if found is None:
            raise TimedOut("listing the CI workflows took too long; retry")
        if isinstance(found, DiachronicError):
            raise found
        results = await asyncio.gather(*(views.get(name, budget_s=VIEW_BUDGET_S) for name in found))
        workflows: list[WorkflowView] = []
        unavailable: list[Unavailable] = []
        for name, result in zip(found, results, strict=True):
            if isinstance(result, WorkflowView):
                workflows.append(result)
            elif result is None:
                message = f"reading the status of {name} is taking long (is the CI worker running?)"
                unavailable.append(Unavailable(workflow_name=name, error="Pending", message=message))
            else:
                unavailable.append(Unavailable(workflow_name=name, error=result.name, message=result.message))
        return workflows, unavailable

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(
        "/api/workflows", response_model=WorkflowList, responses=error_responses(_TEXTS, 503, 504), tags=["dashboard"]
    )
    async def list_workflows() -> Response:
        """Every workflow with a CI: ``diachronic status --json`` (``workflows``), each with its versions and the
        share of new starts routed to each; workflows whose status cannot be read now are in ``unavailable``."""
        (workflows, unavailable), (freezes, freezes_error) = await asyncio.gather(read_all(), freezes_in_force())
        answer = WorkflowList(
            workflows=workflows,
            unavailable=unavailable,
            controls_need_token=token.required,
            freezes=freezes,
            freezes_error=freezes_error,
            read_at=datetime.now(UTC),
        )
        return json_response(answer)

    @app.get(
        "/api/workflows/{name}",
        response_model=WorkflowView,
        responses=error_responses(_TEXTS, 400, 404, 503, 504),
        tags=["dashboard"],
    )
    async def get_workflow(name: WorkflowName) -> Response:
        """One workflow: what ``diachronic status <name> --json`` prints, plus its versions from the flag store."""
        result = await views.get(name, budget_s=DETAIL_BUDGET_S)
        if result is None:
            raise TimedOut(f"status of {name}: no answer yet (is the CI worker running?)")
        if isinstance(result, DiachronicError):
            raise result
        return json_response(result)

    security: dict[str, Any] = {"security": [{"bearerAuth": []}]} if token.required else {}
    body_schema = ControlRequest.model_json_schema(by_alias=True)

    @app.post(
        "/api/workflows/{name}/controls/{control}",
        response_model=ControlResult,
        responses=error_responses(_TEXTS, 400, 401, 404, 413, 422, 503, 504),
        tags=["dashboard"],
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}},
            **security,
        },
    )
    async def control_workflow(name: WorkflowName, control: Control, request: Request) -> Response:
        """Steer the current deployment as ``diachronic continue|cancel|pause|resume|promote|abort`` does. The CI
        checks the control first: one that does not fit the deployment's phase is refused (422) with its reason.
        Send ``Content-Type: application/json`` and ``{}`` or ``{"reason": "..."}``."""
        token.check(
            request.headers, refusal="controls need the token: Authorization: Bearer <DIACHRONIC_SIGNALER_TOKEN>"
        )
        # JSON only: a cross-site form or "simple" request cannot send it, so another site open in a browser on
        # the same network cannot steer a deployment through this route (CSRF) when no token is set.
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise InvalidInstruction([("content-type", "send Content-Type: application/json (the body may be {})")])
        raw = await request.body()
        try:
            body = ControlRequest.model_validate_json(raw) if raw.strip() else ControlRequest()
        except ValidationError as error:
            raise _problems(error) from None
        try:
            async with temporal_errors(f"{control} {name}"), asyncio.timeout(CONTROL_TIMEOUT_S):
                message = await ci.control(client, name, control, body.reason)  # a refusal: UpdateRejected
        finally:
            views.invalidate(name)
        return json_response(ControlResult(workflow_name=name, control=control, message=message))

    return read_all
