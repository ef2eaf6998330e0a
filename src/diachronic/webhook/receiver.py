"""Handle one GitHub delivery: authenticate, parse, decide, start the deployment once.

Transport-free (headers and raw body in, a ``WebhookResult`` or one of our errors out), so the HTTP route is a
thin adapter and the rules are testable without a server. Order matters: nothing is parsed or logged before the
signature is checked.

Stateless: the receiver keeps no record of deliveries. "At most once per delivery" is kept where the deployment
itself is recorded, in Temporal: the delivery id is the update id of the CI's deploy call (``deploy_update_id``).
Temporal runs an update id once per run of the CI workflow and answers a repeat with the first outcome, also after
the run ended as long as it is the workflow's latest run; beyond that, the CI recognises a deploy of the version
it already deploys, queues or has made live as a duplicate (``diachronic.ci.planner.deploy``). So any number of
replicas, restarted at any time, start each delivery at most once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError

from diachronic.ci import client as ci
from diachronic.ci.contracts import DeployAck
from diachronic.contracts import Contract, DeployEvent, ci_workflow_id
from diachronic.errors import BackendError
from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled
from diachronic.webhook.github import RepositoryMap, parse_body, parse_deployment_status, to_deploy_event
from diachronic.webhook.signature import signature_matches

__all__ = ["GitHubReceiver", "StartDeployment", "WebhookResult", "deploy_update_id", "start_deployment"]

log = logging.getLogger(__name__)

StartDeployment = Callable[[DeployEvent, str], Awaitable[DeployAck]]
"""Queue the deployment described by the event on its CI, at most once per delivery id (the second argument)."""

MAX_DELIVERY_ID = 200


class WebhookResult(Contract):
    """What the webhook answers GitHub (shown in the repository's "Recent Deliveries")."""

    delivery: str | None = None
    event: str
    action: Literal["pong", "ignored", "started", "duplicate"]
    detail: str
    workflow_id: str | None = None
    deploy_event: DeployEvent | None = None


def deploy_update_id(delivery: str) -> str:
    """The update id of a delivery's deploy call: Temporal answers a repeated id with the first call's outcome."""
    return f"github-delivery-{delivery}"


async def start_deployment(
    client: Client, ci_task_queue: str, event: DeployEvent, delivery: str, *, timeout_s: float
) -> DeployAck:
    """Update-with-start of ``ci.<workflowName>`` with the deploy request, keyed by the delivery id.

    The update is answered once a CI worker took it: with none polling, give up after ``timeout_s`` (a 503)."""
    try:
        return await asyncio.wait_for(
            ci.deploy(client, ci_task_queue, event, update_id=deploy_update_id(delivery)), timeout_s
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):  # the SDK's answer to the cancelled wait
        raise BackendError(
            f"the CI did not take the deployment of {event.workflow_name} {event.version_id} within {timeout_s:g} s: "
            f"does a CI worker poll task queue {ci_task_queue!r}? (diachronic doctor); redeliver once it does",
            retryable=True,
        ) from None


class GitHubReceiver:
    """The rules of ``POST /webhooks/github``; see docs/http.md."""

    def __init__(
        self,
        *,
        secret: str | None,
        allow_unsigned: bool,
        repositories: RepositoryMap,
        start: StartDeployment,
    ) -> None:
        self._secret = secret or None  # an empty secret would make every signature forgeable: treat as unset
        self._allow_unsigned = allow_unsigned
        self._repositories = repositories
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
            return self._ignore(delivery, event, f"event {event!r} is not acted on")
        status = parse_deployment_status(data)
        state = status.deployment_status.state
        if state != "success":
            return self._ignore(delivery, event, f"deployment state {state!r} is not acted on")
        deploy = to_deploy_event(status, self._repositories)
        return await self._deploy(delivery, event, deploy)

    @staticmethod
    def _ignore(delivery: str, event: str, detail: str) -> WebhookResult:
        log.info("github delivery %s ignored: %s", delivery, detail)
        return WebhookResult(delivery=delivery, event=event, action="ignored", detail=detail)

    async def _deploy(self, delivery: str, event: str, deploy: DeployEvent) -> WebhookResult:
        ack = await self._start(deploy, delivery)
        workflow_id = ci_workflow_id(deploy.workflow_name)
        what = f"{deploy.workflow_name} {deploy.version_id}"
        if ack.position is None:
            action: Literal["started", "duplicate"] = "duplicate"
            detail = f"{what} is already deployed or queued ({ack.decision}): nothing started"
        else:
            action, detail = "started", f"deployment of {what} queued on {workflow_id} (position {ack.position})"
        log.info("github delivery %s: %s", delivery, detail)
        return WebhookResult(
            delivery=delivery, event=event, action=action, detail=detail, workflow_id=workflow_id, deploy_event=deploy
        )
