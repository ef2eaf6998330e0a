"""Pydantic models at every boundary: deploy events, versions, activity inputs/outputs/errors, status.

On the wire every model speaks camelCase (``workflowName``, ``versionId``...), as the original did, so a Python
CI understands payloads sent to the TypeScript one; Python code uses snake_case names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Wire names shared with the original TypeScript system (docs/architecture.md, wire protocol): keep them exactly.
CI_WORKFLOW_TYPE = "workflowCI"
DEPLOY_SUCCESS_SIGNAL = "diachronic.ci.workflow.deploy.success"
ROLLOUT_START_SIGNAL = "diachronic.ci.workflow.rollout.start"
ROLLOUT_CANCEL_SIGNAL = "diachronic.ci.workflow.rollout.cancel"
MIGRATE_SIGNAL = "diachronic.v1.migrate"
"""Signal name shared with the original TypeScript library; one argument ``{"taskQueue": "<queue>"}``."""


def ci_workflow_id(workflow_name: str) -> str:
    return f"ci.{workflow_name}"


def ci_workflow_name(workflow_id: str) -> str | None:
    """The workflow name a CI workflow deploys, from its id (``ci.<workflowName>``); None for another id."""
    prefix, dot, name = workflow_id.partition(".")
    return name if dot and prefix == "ci" and name else None


NAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")
_NAME_CHARACTERS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
MAX_NAME_LENGTH = 63


def check_name(value: str, what: str = "name") -> str:
    """Workflow names and version ids end up in flag names split on ``.`` and in Kubernetes label values: letters,
    digits, ``-`` and ``_``, beginning and ending with a letter or digit, at most 63 characters."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if not _NAME_CHARACTERS.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} may only contain letters, digits, '-' and '_' (and must start with a letter or digit)"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} {value!r} is {len(value)} characters long: as a Kubernetes label value it may have at most "
            f"{MAX_NAME_LENGTH} (the workers' labels carry it)"
        )
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid Kubernetes label value (the workers' labels carry it): it must begin "
            "and end with a letter or digit"
        )
    return value


WorkflowName = Annotated[str, AfterValidator(lambda v: check_name(v, "workflow name"))]
VersionId = Annotated[str, AfterValidator(lambda v: check_name(v, "version id"))]
Environment = str


class Contract(BaseModel):
    """Base of every boundary model: camelCase on the wire, snake_case in Python, frozen, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
        extra="forbid",
    )


class State(Contract):
    """Base of workflow state models: the same wire format, but mutable (the workflow updates it in place)."""

    model_config = ConfigDict(frozen=False)


class GitHubDeploymentRef(Contract):
    """The GitHub deployment a deployment came from: where the CI reports its deployment statuses."""

    repository: str = Field(
        min_length=3, max_length=200, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/repo"
    )
    deployment_id: int = Field(ge=1, description="GitHub's id of the deployment")


MAX_DELIVERY_ID = 200
"""The longest GitHub delivery id (``X-GitHub-Delivery``, a UUID today) a deploy event may carry."""


class DeployEvent(Contract):
    """Payload of ``diachronic.ci.workflow.deploy.success`` (the original's WorkflowDeployEventPayload)."""

    model_config = ConfigDict(extra="ignore")

    workflow_name: WorkflowName
    version_id: VersionId
    sha: str
    environment: Environment
    event_time: datetime
    is_non_migratory: bool = False
    is_dark_deploy: bool = False
    # Ours, not the original's (receivers that do not know it ignore it): set by the webhook, so the CI reports
    # GitHub deployment statuses on the GitHub deployment this deployment came from.
    github_deployment: GitHubDeploymentRef | None = None
    # Ours too: the GitHub delivery (``X-GitHub-Delivery``) it came from, so the CI recognises a redelivery.
    delivery_id: str | None = Field(default=None, min_length=1, max_length=MAX_DELIVERY_ID)


class VersionInfo(Contract):
    """One deployed version of a workflow, as its flag records it (the original's WorkflowVersionInfo)."""

    workflow_name: WorkflowName
    version_id: VersionId
    seq_id: int = Field(ge=0)
    flag_name: str
    task_queue: str
    environment: Environment | None = None


class RolloutStep(Contract):
    """Wait ``wait_s`` seconds, then route ``percent`` % of new starts to the new version."""

    percent: int = Field(ge=0, le=100)
    wait_s: float = Field(ge=0)
