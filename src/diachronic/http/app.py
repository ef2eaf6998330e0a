"""The HTTP app: GitHub webhook, signaler and health check, in one FastAPI app served by uvicorn.

``create_app`` takes everything once (settings, a Temporal client, a flag store); handlers never read the
environment. The two POST routes read their raw body themselves: the webhook must check the signature over the
exact bytes before parsing, and the signaler checks its token before it looks at the body. Their request schemas
are added to the OpenAPI document from the same pydantic models that validate them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.responses import Response
from temporalio.client import Client

from diachronic.contracts import Contract, DeployEvent
from diachronic.errors import BackendError, DiachronicError
from diachronic.flags import FlagStore
from diachronic.http.auth import BearerToken
from diachronic.http.dashboard import install_dashboard
from diachronic.http.errors import install_error_handlers
from diachronic.http.limits import BodyLimit
from diachronic.http.metrics import install_metrics
from diachronic.http.responses import error_responses, json_response
from diachronic.metrics import WEBHOOK_DELIVERIES
from diachronic.settings import Settings
from diachronic.signaler.client import Signaler
from diachronic.signaler.instructions import (
    BatchResult,
    SignalResult,
    SignalWithStartResult,
    StartResult,
    instruction_adapter,
    parse_instruction,
)
from diachronic.temporal_errors import temporal_errors
from diachronic.webhook.github import DeploymentStatusEvent, RepositoryMap
from diachronic.webhook.receiver import GitHubReceiver, WebhookResult, send_deployment

__all__ = ["Health", "create_app"]

log = logging.getLogger(__name__)

API_VERSION = "1"


class Health(Contract):
    """``/healthz``: ready when Temporal answers; also says how the webhook and the signaler are protected."""

    status: Literal["ok", "unavailable"]
    temporal: Literal["ok", "unavailable"]
    webhook: Literal["enabled", "unsigned", "disabled"]
    signaler_auth: Literal["token", "none"]


_ERROR_TEXTS = {
    400: "invalid request: `problems` names each bad field",
    401: "missing or wrong credentials",
    404: "workflow not found, or no enabled version to route to",
    409: "a workflow with this id is already running",
    413: "request body too large",
    422: "the workflow rejected the update",
    503: "Temporal, the flag store or the configuration is unavailable; retry later",
    504: "the workflow did not answer the update in time",
}


def create_app(settings: Settings, client: Client, flags: FlagStore, *, dev: bool = False) -> FastAPI:
    """The app. ``dev``: running inside ``diachronic dev``, where an unset webhook secret means "accept unsigned"
    instead of "refuse". The caller owns ``client`` and ``flags``; the app keeps no state of its own (any number of
    replicas can serve it: the CI recognises a GitHub delivery it took, see ``diachronic.webhook.receiver``)."""
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else ""
    token = BearerToken(settings.signaler_token)
    signaler = Signaler(client, flags, update_timeout=timedelta(seconds=settings.signaler_update_timeout_s))
    ci_task_queue = settings.ci_task_queue

    async def send(event: DeployEvent) -> None:
        await send_deployment(client, ci_task_queue, event, timeout_s=settings.webhook_deploy_timeout_s)

    receiver = GitHubReceiver(
        secret=secret or None,
        allow_unsigned=dev,
        repositories=RepositoryMap(settings.github_repositories),
        send=send,
    )
    webhook_mode: Literal["enabled", "unsigned", "disabled"] = (
        "enabled" if secret else "unsigned" if dev else "disabled"
    )

    app = FastAPI(
        title="diachronic",
        version=API_VERSION,
        summary="GitHub deployment webhook and workflow signaler of diachronic",
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.http_max_body_bytes)
    install_error_handlers(app)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "degraded"}})
    async def healthz() -> Response:
        """Liveness and readiness: 200 when Temporal answers, 503 when it does not."""
        temporal: Literal["ok", "unavailable"] = "ok"
        try:
            async with temporal_errors("health check"):
                await client.service_client.check_health(timeout=timedelta(seconds=2))
        except BackendError:
            temporal = "unavailable"
        health = Health(
            status=temporal,
            temporal=temporal,
            webhook=webhook_mode,
            signaler_auth="token" if token.required else "none",
        )
        return json_response(health, 200 if temporal == "ok" else 503, exclude_none=True)

    @app.post(
        "/webhooks/github",
        response_model=WebhookResult,
        status_code=200,
        responses={
            202: {"model": WebhookResult, "description": "deployment sent to its CI (recorded by Temporal)"},
            **error_responses(_ERROR_TEXTS, 400, 401, 413, 503),
        },
    )
    async def github_webhook(request: Request) -> Response:
        """GitHub's webhook: a ``deployment_status`` with state ``success`` starts a deployment (signal-with-start
        of ``ci.<workflowName>``); ``ping`` answers pong; every other delivery is recorded and ignored."""
        body = await request.body()
        event = request.headers.get("x-github-event", "")[:50]
        try:
            result = await receiver.receive(request.headers, body, request.headers.get("content-type"))
        except DiachronicError as error:
            WEBHOOK_DELIVERIES.labels(event=_event_label(event), result=error.name).inc()
            raise
        WEBHOOK_DELIVERIES.labels(event=_event_label(event), result=result.action).inc()
        return json_response(result, 202 if result.action == "started" else 200, exclude_none=True)

    @app.post(
        "/instruction",
        responses={
            200: {"description": "the result of the action (an update answers the workflow's reply)"},
            **error_responses(_ERROR_TEXTS, 400, 401, 404, 409, 413, 422, 503, 504),
        },
    )
    async def instruction(request: Request) -> Response:
        """The original signaler's route: ``{action, args}`` with ``start``, ``signal``, ``signalWithStart``,
        ``signalBatch``, ``signalWithStartBatch``, ``update``, ``updateOrStart``. An empty ``taskQueue`` is
        chosen by the flags with the context ``{userId: workflowId, isTest}``."""
        token.check(
            request.headers, refusal="missing or wrong bearer token (Authorization: Bearer <DIACHRONIC_SIGNALER_TOKEN>)"
        )
        return json_response(await signaler.execute(parse_instruction(await request.body())), exclude_none=True)

    read_all = install_dashboard(app, settings, client, flags)  # the page at / and /api/workflows (docs/dashboard.md)
    install_metrics(app, read_all)  # GET /metrics (docs/pipeline.md)
    app.openapi = _openapi(app, token_required=token.required)  # type: ignore[method-assign]
    return app


def _event_label(event: str) -> str:
    """GitHub's event names as a metrics label; anything else (a sender's invention) counts as ``other``."""
    return event if event in ("deployment_status", "deployment", "ping") else "other"


def _openapi(app: FastAPI, *, token_required: bool) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, plus the request bodies the two POST routes validate themselves and the auth scheme."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})

        def body_schema(adapter: TypeAdapter[Any], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
            js = adapter.json_schema(ref_template="#/components/schemas/{model}", mode=mode, by_alias=True)
            schemas.update(js.pop("$defs", {}))
            return js

        instruction_op = schema["paths"]["/instruction"]["post"]
        instruction_op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body_schema(instruction_adapter, "validation")}},
        }
        results = TypeAdapter(StartResult | SignalResult | SignalWithStartResult | BatchResult)
        instruction_op["responses"]["200"]["content"] = {
            "application/json": {
                "schema": {"anyOf": [body_schema(results, "serialization"), {"description": "an update's reply"}]}
            }
        }
        if token_required:
            components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            instruction_op["security"] = [{"bearerAuth": []}]

        webhook_op = schema["paths"]["/webhooks/github"]["post"]
        event_schema = body_schema(TypeAdapter(DeploymentStatusEvent), "validation")
        event_schema["description"] = "a deployment_status event; other events (ping...) are any JSON object"
        webhook_op["requestBody"] = {"required": True, "content": {"application/json": {"schema": event_schema}}}
        webhook_op["parameters"] = [
            {"name": name, "in": "header", "required": required, "schema": {"type": "string"}, "description": text}
            for name, required, text in (
                ("X-GitHub-Event", True, "the event name: deployment_status, ping, ..."),
                ("X-GitHub-Delivery", False, "the delivery id (GUID); a redelivery never deploys twice"),
                ("X-Hub-Signature-256", False, "sha256=<HMAC-SHA256 of the body with the webhook secret>"),
            )
        ]
        app.openapi_schema = schema
        return schema

    return build
