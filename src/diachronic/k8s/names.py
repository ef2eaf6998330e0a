"""Kubernetes naming rules for diachronic's names, checked before any API call.

A workflow name and a version id become label values (``diachronic/workflow-name``, ``diachronic/version-id``).
diachronic's own name rule (``contracts.check_name``: letters, digits, ``-``, ``_``, alphanumeric at both ends, at
most 63 characters) is stricter than Kubernetes' label values, so every accepted name can be a label; a name that
could not be one is refused up front (``workers.check_names``) with a message that says which rule it breaks.

A version's worker Deployment is named ``<kebab(workflowName)>-<kebab(versionId)>-<hash>``: a DNS-1123 label
(lower case, at most 63 characters, valid for the pods derived from it). The hash of the exact pair keeps names
apart that lower-casing and ``-`` joining would merge (``orders-a``/``b`` and ``orders``/``a-b``, ``V1`` and
``v1``): two versions sharing a name would overwrite each other's Deployment in one namespace.
"""

from __future__ import annotations

import hashlib
import re

from diachronic.errors import InvalidInput
from diachronic.workers import check_names

__all__ = [
    "DNS_LABEL_MAX",
    "check_namespace",
    "check_object_name",
    "kebab",
    "worker_deployment_name",
]

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
HASH_LENGTH = 8

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def check_namespace(namespace: str) -> str:
    """A namespace is a DNS-1123 label; checked so that a typo fails here, not as a confusing 404."""
    if len(namespace) > DNS_LABEL_MAX or not _DNS_LABEL.match(namespace):
        raise InvalidInput(
            f"namespace {namespace!r} is not a valid Kubernetes namespace: at most {DNS_LABEL_MAX} lower-case "
            "letters, digits or '-', beginning and ending with a letter or digit"
        )
    return namespace


def check_object_name(name: str) -> str:
    """A Deployment name (DNS-1123 subdomain): also keeps ``/`` and ``..`` out of the request path."""
    parts = name.split(".")
    if len(name) > DNS_SUBDOMAIN_MAX or not all(_DNS_LABEL.match(part) for part in parts):
        raise InvalidInput(
            f"{name!r} is not a valid Kubernetes object name: lower-case letters, digits, '-' and '.', beginning "
            "and ending with a letter or digit"
        )
    return name


def kebab(value: str) -> str:
    """``subscriptionWorkflow_v2`` -> ``subscription-workflow-v2``: lower case, words joined by ``-``."""
    spaced = _CAMEL.sub("-", value).replace("_", "-").lower()
    return re.sub(r"-{2,}", "-", spaced).strip("-")


def worker_deployment_name(workflow_name: str, version_id: str) -> str:
    """The Deployment name of a version's workers; raises ``InvalidInput`` for names that cannot be labels."""
    check_names(workflow_name, version_id)
    digest = hashlib.sha256(f"{workflow_name}/{version_id}".encode()).hexdigest()[:HASH_LENGTH]
    readable = f"{kebab(workflow_name)}-{kebab(version_id)}"[: DNS_LABEL_MAX - HASH_LENGTH - 1].strip("-")
    return f"{readable}-{digest}" if readable else digest
