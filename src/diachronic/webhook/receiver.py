"""Handle one GitHub delivery: authenticate, parse, decide, deduplicate, start the deployment.

Transport-free (headers and raw body in, a ``WebhookResult`` or one of our errors out), so the HTTP route is a
thin adapter and the rules are testable without a server. Order matters: nothing is parsed, recorded or logged
before the signature is checked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from temporalio.client import Client

from diachronic.contracts import CI_WORKFLOW_TYPE, DEPLOY_SUCCESS_SIGNAL, Contract, DeployEvent, ci_workflow_id
from diachronic.temporal_errors import temporal_errors
from diachronic.webhook.deliveries import STARTED, DeliveryLog
from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled
from diachronic.webhook.github import RepositoryMap, parse_body, parse_deployment_status, to_deploy_event
from diachronic.webhook.signature import signature_matches

__all__ = ["GitHubReceiver", "StartDeployment", "WebhookResult", "start_deployment"]

log = logging.getLogger(__name__)

StartDeployment = Callable[[DeployEvent], Awaitable[str]]
"""Start (or queue) the deployment described by the event; returns the CI run id that received it."""

MAX_DELIVERY_ID = 200


class WebhookResult(Contract):
    """What the webhook answers GitHub (shown in the repository's "Recent Deliveries")."""

    delivery: str | None = None
    event: str
    action: Literal["pong", "ignored", "started", "duplicate"]
    detail: str
    workflow_id: str | None = None
    run_id: str | None = None
    deploy_event: DeployEvent | None = None


async def start_deployment(client: Client, ci_task_queue: str, event: DeployEvent) -> str:
    """The original's wire message: signal-with-start ``workflowCI`` (id ``ci.<workflowName>``) with
    ``diachronic.ci.workflow.deploy.success`` and the payload itself as the one signal argument
    (docs/architecture.md)."""
    payload = event.model_dump(mode="json", by_alias=True)
    workflow_id = ci_workflow_id(event.workflow_name)
    async with temporal_errors(f"signal-with-start {workflow_id}"):
        handle = await client.start_workflow(
            CI_WORKFLOW_TYPE,
            id=workflow_id,
            task_queue=ci_task_queue,
            start_signal=DEPLOY_SUCCESS_SIGNAL,
            start_signal_args=[payload],
        )
    return handle.result_run_id or ""


class GitHubReceiver:
    """The rules of ``POST /webhooks/github``; see docs/http.md."""

    def __init__(
        self,
        *,
        secret: str | None,
        allow_unsigned: bool,
        repositories: RepositoryMap,
        deliveries: DeliveryLog,
        start: StartDeployment,
    ) -> None:
        self._secret = secret or None  # an empty secret would make every signature forgeable: treat as unset
        self._allow_unsigned = allow_unsigned
        self._repositories = repositories
        self._deliveries = deliveries
        self._start = start

    @property
    def enabled(self) -> bool:
        return self._secret is not None or self._allow_unsigned

    def _authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        if self._secret is None:
            if not self._allow_unsigned:
                raise WebhookDisabled(
                    "the GitHub webhook is disabled: set DIACHRONIC_GITHUB_WEBHOOK_SECRET "
                    "(only `diachronic dev` accepts unsigned deliveries)"
                )
            return
        if not signature_matches(self._secret, body, headers.get("x-hub-signature-256")):
            raise BadSignature("missing or wrong X-Hub-Signature-256")

    async def receive(self, headers: Mapping[str, str], body: bytes, content_type: str | None = None) -> WebhookResult:
        headers = {k.lower(): v for k, v in headers.items()}
        self._authenticate(headers, body)
        event = headers.get("x-github-event", "").strip()
        if not event:
            raise PayloadError("X-GitHub-Event", "header missing")
        delivery = headers.get("x-github-delivery", "").strip()
        if event == "ping":
            parse_body(body, content_type)
            return WebhookResult(delivery=delivery or None, event=event, action="pong", detail="pong")
        if not delivery:
            raise PayloadError("X-GitHub-Delivery", "header missing")
        if len(delivery) > MAX_DELIVERY_ID:
            raise PayloadError("X-GitHub-Delivery", f"longer than {MAX_DELIVERY_ID} characters")
        data = parse_body(body, content_type)
        if event != "deployment_status":
            return await self._ignore(delivery, event, f"event {event!r} is not acted on")
        status = parse_deployment_status(data)
        state = status.deployment_status.state
        if state != "success":
            return await self._ignore(delivery, event, f"deployment state {state!r} is not acted on")
        deploy = to_deploy_event(status, self._repositories)
        return await self._deploy(delivery, event, deploy)

    async def _ignore(self, delivery: str, event: str, detail: str) -> WebhookResult:
        earlier = await self._deliveries.record_ignored(delivery, event, detail)
        if earlier is not None and earlier.outcome == STARTED:
            return self._duplicate(delivery, event, earlier.workflow_name, earlier.run_id)
        log.info("github delivery %s ignored: %s", delivery, detail)
        return WebhookResult(delivery=delivery, event=event, action="ignored", detail=detail)

    @staticmethod
    def _duplicate(delivery: str, event: str, workflow_name: str | None, run_id: str | None) -> WebhookResult:
        log.info("github delivery %s is a redelivery: nothing started", delivery)
        return WebhookResult(
            delivery=delivery,
            event=event,
            action="duplicate",
            detail="this delivery was handled before: nothing started",
            workflow_id=ci_workflow_id(workflow_name) if workflow_name else None,
            run_id=run_id,
        )

    async def _deploy(self, delivery: str, event: str, deploy: DeployEvent) -> WebhookResult:
        earlier = await self._deliveries.claim(
            delivery, event, workflow_name=deploy.workflow_name, version_id=deploy.version_id
        )
        if earlier is not None:
            return self._duplicate(delivery, event, earlier.workflow_name, earlier.run_id)
        try:
            run_id = await self._start(deploy)
        except BaseException:
            await self._deliveries.release(delivery)  # nothing was started: GitHub's retry may deploy
            raise
        await self._deliveries.mark_started(delivery, run_id)
        workflow_id = ci_workflow_id(deploy.workflow_name)
        log.info(
            "github delivery %s: deploying %s version %s (%s)",
            delivery,
            deploy.workflow_name,
            deploy.version_id,
            workflow_id,
        )
        return WebhookResult(
            delivery=delivery,
            event=event,
            action="started",
            detail=f"deployment of {deploy.workflow_name} {deploy.version_id} sent to {workflow_id}",
            workflow_id=workflow_id,
            run_id=run_id,
            deploy_event=deploy,
        )
