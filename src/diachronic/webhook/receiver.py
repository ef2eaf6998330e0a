"""Handle one GitHub delivery: authenticate, parse, decide, send the deployment to its CI, durably.

Transport-free (headers and raw body in, a ``WebhookResult`` or one of our errors out), so the HTTP route is a
thin adapter and the rules are testable without a server. Order matters: nothing is parsed or logged before the
signature is checked.

Durable and stateless. A ``success`` is sent as the original's wire message, a signal-with-start of the CI
workflow (``diachronic.ci.client.signal_deploy``): Temporal records it as soon as it answers, whether or not a CI
worker polls, so a delivery that got a 2xx is never lost (GitHub does not redeliver by itself); the deployment
starts once a CI worker runs. The receiver keeps no record of deliveries: the deploy event carries the delivery id
(``deliveryId``), and the CI treats a delivery it took recently as a duplicate, as it does a deploy of the version
it deploys, queues or has already made the newest live version (``diachronic.ci.planner.deploy``,
``planner.deployment``). So any number of replicas, restarted at any time, deploy each delivery at most once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from temporalio.client import Client

from diachronic.ci import client as ci
from diachronic.contracts import MAX_DELIVERY_ID, Contract, DeployEvent, ci_workflow_id
from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled
from diachronic.webhook.github import RepositoryMap, parse_body, parse_deployment_status, to_deploy_event
from diachronic.webhook.signature import signature_matches

__all__ = ["GitHubReceiver", "SendDeployment", "WebhookResult", "send_deployment"]

log = logging.getLogger(__name__)

SendDeployment = Callable[[DeployEvent], Awaitable[None]]
"""Send the deploy event (carrying its delivery id) to its CI, durably; raises when Temporal did not record it."""


class WebhookResult(Contract):
    """What the webhook answers GitHub (shown in the repository's "Recent Deliveries")."""

    delivery: str | None = None
    event: str
    action: Literal["pong", "ignored", "started"]
    detail: str
    workflow_id: str | None = None
    deploy_event: DeployEvent | None = None


async def send_deployment(client: Client, ci_task_queue: str, event: DeployEvent, *, timeout_s: float) -> None:
    """Signal-with-start of ``ci.<workflowName>`` on ``ci_task_queue``; Temporal must record it within
    ``timeout_s`` (else a 503: GitHub gives up after 10 s)."""
    await ci.signal_deploy(client, ci_task_queue, event, rpc_timeout_s=timeout_s)


class GitHubReceiver:
    """The rules of ``POST /webhooks/github``; see docs/http.md."""

    def __init__(
        self,
        *,
        secret: str | None,
        allow_unsigned: bool,
        repositories: RepositoryMap,
        send: SendDeployment,
    ) -> None:
        self._secret = secret or None  # an empty secret would make every signature forgeable: treat as unset
        self._allow_unsigned = allow_unsigned
        self._repositories = repositories
        self._send = send

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
            return self._ignore(delivery, event, f"event {event!r} is not acted on")
        status = parse_deployment_status(data)
        state = status.deployment_status.state
        if state != "success":
            return self._ignore(delivery, event, f"deployment state {state!r} is not acted on")
        deploy = to_deploy_event(status, self._repositories, delivery=delivery)
        return await self._deploy(delivery, event, deploy)

    @staticmethod
    def _ignore(delivery: str, event: str, detail: str) -> WebhookResult:
        log.info("github delivery %s ignored: %s", delivery, detail)
        return WebhookResult(delivery=delivery, event=event, action="ignored", detail=detail)

    async def _deploy(self, delivery: str, event: str, deploy: DeployEvent) -> WebhookResult:
        await self._send(deploy)
        workflow_id = ci_workflow_id(deploy.workflow_name)
        detail = (
            f"deployment of {deploy.workflow_name} {deploy.version_id} sent to {workflow_id}: it queues it, or "
            "recognises a duplicate (this delivery again, or a version it already deploys or made live)"
        )
        log.info("github delivery %s: %s", delivery, detail)
        return WebhookResult(
            delivery=delivery,
            event=event,
            action="started",
            detail=detail,
            workflow_id=workflow_id,
            deploy_event=deploy,
        )
