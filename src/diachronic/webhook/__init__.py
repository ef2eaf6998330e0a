"""The GitHub webhook receiver: ``deployment_status`` success -> the CI's deploy (update-with-start), once per delivery.

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
    StartDeployment,
    WebhookResult,
    deploy_update_id,
    start_deployment,
)
from diachronic.webhook.signature import sign, signature_matches

__all__ = [
    "BadSignature",
    "DeploymentStatusEvent",
    "GitHubReceiver",
    "PayloadError",
    "RepositoryMap",
    "StartDeployment",
    "WebhookDisabled",
    "WebhookResult",
    "deploy_update_id",
    "parse_body",
    "parse_deployment_status",
    "sign",
    "signature_matches",
    "start_deployment",
    "to_deploy_event",
]
