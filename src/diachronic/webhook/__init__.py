"""The GitHub webhook receiver: ``deployment_status`` success -> the CI's deploy signal (signal-with-start), durable,
deployed at most once per delivery.

Pure parts (payload models, signature, mapping) are importable without a server; ``diachronic.http`` serves
``GitHubReceiver`` at ``POST /webhooks/github``.
"""

from __future__ import annotations

from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled
from diachronic.webhook.github import (
    DeploymentStatusEvent,
    RepositoryMap,
    parse_body,
    parse_deployment_status,
    to_deploy_event,
)
from diachronic.webhook.receiver import (
    GitHubReceiver,
    SendDeployment,
    WebhookResult,
    send_deployment,
)
from diachronic.webhook.signature import sign, signature_matches

__all__ = [
    "BadSignature",
    "DeploymentStatusEvent",
    "GitHubReceiver",
    "PayloadError",
    "RepositoryMap",
    "SendDeployment",
    "WebhookDisabled",
    "WebhookResult",
    "parse_body",
    "parse_deployment_status",
    "send_deployment",
    "sign",
    "signature_matches",
    "to_deploy_event",
]
