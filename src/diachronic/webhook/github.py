"""GitHub's ``deployment_status`` webhook payload (only the fields diachronic reads) and its mapping to a DeployEvent.

Pure: no I/O, no clock. GitHub sends far more fields than these; unknown ones are ignored so GitHub can add
fields without breaking deliveries. Reference: GitHub's "deployment_status" webhook event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

from diachronic.contracts import DeployEvent
from diachronic.webhook.errors import PayloadError

__all__ = [
    "SHORT_SHA_LENGTH",
    "Deployment",
    "DeploymentStatus",
    "DeploymentStatusEvent",
    "Repository",
    "RepositoryMap",
    "parse_body",
    "parse_deployment_status",
    "to_deploy_event",
]

SHORT_SHA_LENGTH = 7  # versionId = `git rev-parse --short HEAD`, as the original's README says


def _object_or_string(value: Any) -> Any:
    if value is None or isinstance(value, dict | str):
        return value
    raise ValueError("must be an object (or a string holding a JSON object)")


class _GitHub(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Repository(_GitHub):
    full_name: str = Field(min_length=3, max_length=200, pattern=r"^[^/\s]+/[^/\s]+$")


class Deployment(_GitHub):
    id: int | None = Field(default=None, ge=1)  # GitHub always sends it: statuses are reported there
    sha: str = Field(pattern=r"^[0-9a-fA-F]{7,64}$")
    environment: str = Field(min_length=1, max_length=255)
    # An object, or a JSON string when the deployment was created with a string payload; absent means {}.
    payload: Annotated[
        Any,
        AfterValidator(_object_or_string),
        WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "string"}, {"type": "null"}]}),
    ] = None


class DeploymentStatus(_GitHub):
    # GitHub's states: error, failure, inactive, in_progress, queued, pending, success, waiting (kept open: a new
    # state must be recorded and ignored, not rejected).
    state: str = Field(min_length=1, max_length=50)
    created_at: datetime


class DeploymentStatusEvent(_GitHub):
    deployment_status: DeploymentStatus
    deployment: Deployment
    repository: Repository


class RepositoryMap:
    """Repository -> workflow name, for deployments whose payload does not name the workflow.

    Keys are ``owner/repo`` or ``owner/repo:environment`` (the environment-specific entry wins); GitHub treats
    repository names case-insensitively, so do we."""

    def __init__(self, entries: Mapping[str, str] | None = None) -> None:
        self._entries = {key.strip().lower(): name for key, name in (entries or {}).items()}

    def workflow_name(self, full_name: str, environment: str) -> str | None:
        key = full_name.lower()
        return self._entries.get(f"{key}:{environment.lower()}") or self._entries.get(key)

    def __len__(self) -> int:
        return len(self._entries)


def _problems(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    return [(prefix + ".".join(str(part) for part in e["loc"]) or "body", e["msg"]) for e in error.errors()]


def _payload_error(problems: Iterable[tuple[str, str]]) -> PayloadError:
    items = list(problems)
    field, problem = items[0]
    error = PayloadError(field, problem)
    if len(items) > 1:  # name every field at once: the sender fixes them in one go
        error.message = "; ".join(f"{f}: {p}" for f, p in items)
        error.args = (error.message,)
    return error


def parse_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The delivery's JSON object; GitHub's form encoding (``payload=<json>``) is accepted too."""
    raw: str | bytes = body
    if (content_type or "").split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise PayloadError("body", "not valid form data") from None
        if "payload" not in form:
            raise PayloadError("payload", "missing from the form body")
        raw = form["payload"][0]
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError("body", f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PayloadError("body", f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_deployment_status(data: Mapping[str, Any]) -> DeploymentStatusEvent:
    try:
        return DeploymentStatusEvent.model_validate(data)
    except ValidationError as error:
        raise _payload_error(_problems(error)) from None


def _deployment_payload(deployment: Deployment) -> dict[str, Any]:
    payload: Any = deployment.payload
    if payload is None or payload == "":
        return {}
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise PayloadError("deployment.payload", "a string payload must be a JSON object") from None
    if not isinstance(payload, dict):
        raise PayloadError("deployment.payload", "must be a JSON object")
    return payload


def to_deploy_event(
    event: DeploymentStatusEvent, repositories: RepositoryMap, *, delivery: str | None = None
) -> DeployEvent:
    """The CI's deploy payload for a ``success`` status (docs/http.md), carrying the ``delivery`` id it came in."""
    deployment = event.deployment
    payload = _deployment_payload(deployment)
    workflow_name = payload.get("workflowName")
    source = "deployment.payload.workflowName"
    if workflow_name is None:
        workflow_name = repositories.workflow_name(event.repository.full_name, deployment.environment)
        source = "repository.full_name"
    if workflow_name is None:
        raise PayloadError(
            "deployment.payload.workflowName",
            f"missing, and repository {event.repository.full_name!r} (environment {deployment.environment!r}) "
            "is not in DIACHRONIC_GITHUB_REPOSITORIES",
        )
    fields: dict[str, Any] = {
        "workflowName": workflow_name,
        "versionId": deployment.sha[:SHORT_SHA_LENGTH].lower(),
        "sha": deployment.sha.lower(),
        "environment": deployment.environment,
        "eventTime": event.deployment_status.created_at,
        "isDarkDeploy": payload.get("isDarkDeploy") or False,  # absent or null: false, as in the original
        "isNonMigratory": payload.get("isNonMigratory") or False,
    }
    if delivery is not None:
        fields["deliveryId"] = delivery
    if deployment.id is not None:
        fields["githubDeployment"] = {"repository": event.repository.full_name, "deploymentId": deployment.id}
    try:
        return DeployEvent.model_validate(fields)
    except ValidationError as error:
        where = {"workflowName": source, "versionId": "deployment.sha"}
        problems = []
        for e in error.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            problems.append((where.get(key, f"deployment.payload.{key}"), e["msg"]))
        raise _payload_error(problems) from None
