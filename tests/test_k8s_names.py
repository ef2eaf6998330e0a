"""Kubernetes naming: which names can be labels, and how a version's Deployment is named (valid, unique, stable)."""

from __future__ import annotations

import re

import pytest

from diachronic.errors import InvalidInput
from diachronic.k8s.names import (
    check_namespace,
    check_object_name,
    kebab,
    worker_deployment_name,
)
from diachronic.workers import check_names

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("orders", "orders"),
        ("subscriptionWorkflow", "subscription-workflow"),
        ("HTTPServer", "http-server"),
        ("orders_v2", "orders-v2"),
        ("a__b--c", "a-b-c"),
        ("abc123DEF", "abc123-def"),
    ],
)
def test_kebab(value: str, expected: str) -> None:
    assert kebab(value) == expected


def test_deployment_names_are_stable_readable_dns_labels() -> None:
    # Pinned: a changed derivation would make a pipeline re-applying a version create a second Deployment.
    assert worker_deployment_name("orders", "v1") == "orders-v1-cea94529"
    assert worker_deployment_name("subscriptionWorkflow", "3f2a9c1").startswith("subscription-workflow-3f2a9c1-")
    longest = worker_deployment_name("W" * 63, "V" * 63)
    for name in [longest, worker_deployment_name("a", "b"), worker_deployment_name("A_b-C", "Z_9")]:
        assert DNS_LABEL.match(name) and len(name) <= 63, name


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("orders-a", "b"), ("orders", "a-b")),  # the same task queue, orders-a-b
        (("orders", "V1"), ("orders", "v1")),  # the same once lower-cased
        (("a_b", "c"), ("a-b", "c")),  # the same once kebab-cased
        (("w" * 63, "v" * 40 + "1"), ("w" * 63, "v" * 40 + "2")),  # the same once truncated
    ],
)
def test_distinct_versions_never_share_a_deployment_name(one: tuple[str, str], other: tuple[str, str]) -> None:
    assert worker_deployment_name(*one) != worker_deployment_name(*other)


@pytest.mark.parametrize(
    ("workflow_name", "version_id", "message"),
    [
        ("orders-", "v1", "must begin and end with a letter or digit"),
        ("orders", "v1_", "must begin and end with a letter or digit"),
        ("o" * 64, "v1", "64 characters long: as a Kubernetes label value it may have at most 63"),
        ("orders", "v" * 64, "64 characters long"),
        ("bad.name", "v1", "may only contain letters, digits"),
        ("orders", "", "must not be empty"),
    ],
)
def test_names_that_cannot_be_labels_are_rejected_clearly(workflow_name: str, version_id: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        worker_deployment_name(workflow_name, version_id)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        check_names(workflow_name, version_id)


def test_namespace_and_object_name_rules() -> None:
    assert check_namespace("team-a") == "team-a"
    for bad in ["Team-a", "team_a", "-team", "a" * 64, ""]:
        with pytest.raises(InvalidInput, match="not a valid Kubernetes namespace"):
            check_namespace(bad)
    assert check_object_name("orders-v1-cea94529") == "orders-v1-cea94529"
    for bad in ["../secrets", "a/b", "Orders", "a..b", ""]:
        with pytest.raises(InvalidInput, match="not a valid Kubernetes object name"):
            check_object_name(bad)
