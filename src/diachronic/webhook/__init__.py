"""The GitHub webhook receiver: ``deployment_status`` success -> signal-with-start of the CI workflow.

Pure parts (payload models, signature, mapping) are importable without a server; ``diachronic.http`` serves
``GitHubReceiver`` at ``POST /webhooks/github``.
"""

from __future__ import annotations

from diachronic.webhook.deliveries import Delivery, DeliveryLog
from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled
from diachronic.webhook.github import (
    DeploymentStatusEvent,
    RepositoryMap,
    parse_body,
    parse_deployment_status,
    to_deploy_event,
)
from diachronic.webhook.receiver import GitHubReceiver, StartDeployment, WebhookResult, start_deployment
from diachronic.webhook.signature import sign, signature_matches

__all__ = [
    "BadSignature",
    "Delivery",
    "DeliveryLog",
    "DeploymentStatusEvent",
    "GitHubReceiver",
    "PayloadError",
    "RepositoryMap",
    "StartDeployment",
    "WebhookDisabled",
    "WebhookResult",
    "parse_body",
    "parse_deployment_status",
    "sign",
    "signature_matches",
    "start_deployment",
    "to_deploy_event",
]
