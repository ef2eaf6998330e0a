"""The worker sets contract: what every backend of ``diachronic.workers`` must do.

A backend's test module subclasses ``DeploymentsContract`` as ``Test<Backend>DeploymentsContract`` and provides an
async fixture ``harness`` yielding a ``DeploymentsHarness`` (and cleaning up whatever it created). The harness
creates deployments *around* the port (local: a Python sleeper process; Kubernetes: a Deployment object via the
API), so the port's find/delete are checked against things they did not make themselves.

Import it as ``from workers_contract import DeploymentsContract`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import pytest

from diachronic.errors import InvalidInput
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW, WorkerBackend, WorkerSet


class DeploymentsHarness(Protocol):
    def open(self) -> WorkerBackend:
        """A new backend instance on the same storage; opening another one is how a CLI restart looks."""
        ...

    async def create(self, workflow_name: str, version_id: str) -> None:
        """Create a deployment of this version whose workers run, with both labels."""
        ...

    async def create_labelled(self, labels: dict[str, str]) -> None:
        """Create a deployment whose workers run, with exactly these labels (a hand edit, an older tool...)."""
        ...

    async def is_gone(self, deployment: WorkerSet) -> bool:
        """True once the deployment's workers no longer run, checked without the port."""
        ...


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll until ``check`` holds: tests wait for conditions, never for fixed times."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout_s} s")
        await asyncio.sleep(0.02)


def version_of(deployment: WorkerSet) -> tuple[str, str]:
    return deployment.labels[LABEL_WORKFLOW], deployment.labels[LABEL_VERSION]


class DeploymentsContract:
    async def test_find_matches_both_labels_exactly(self, harness: DeploymentsHarness) -> None:
        # "orders-a"/"b" and "orders"/"a-b" share the task queue "orders-a-b": only labels tell them apart.
        versions = [("orders", "v1"), ("orders", "v2"), ("billing", "v1"), ("orders-a", "b"), ("orders", "a-b")]
        for workflow_name, version_id in versions:
            await harness.create(workflow_name, version_id)
        deployments = harness.open()
        try:
            for workflow_name, version_id in versions:
                found = await deployments.find(workflow_name, version_id)
                assert [version_of(d) for d in found] == [(workflow_name, version_id)]
                assert all(d.running for d in found)
            assert await deployments.find("orders", "v3") == []
            assert await deployments.find("order", "v1") == []
            assert await deployments.find("Orders", "v1") == []
        finally:
            await deployments.close()

    async def test_a_deployment_missing_a_label_is_never_found(self, harness: DeploymentsHarness) -> None:
        await harness.create_labelled({LABEL_WORKFLOW: "orders"})
        await harness.create_labelled({LABEL_VERSION: "v1"})
        deployments = harness.open()
        try:
            assert await deployments.find("orders", "v1") == []
            assert await deployments.list_versions("orders") == []
        finally:
            await deployments.close()

    async def test_delete_stops_that_version_only(self, harness: DeploymentsHarness) -> None:
        for workflow_name, version_id in [("orders", "v1"), ("orders", "v2"), ("billing", "v1")]:
            await harness.create(workflow_name, version_id)
        deployments = harness.open()
        try:
            [old] = await deployments.find("orders", "v1")
            await deployments.delete(old)
            await eventually(lambda: harness.is_gone(old), what="the deleted workers stopped")
            assert await deployments.find("orders", "v1") == []
            for workflow_name, version_id in [("orders", "v2"), ("billing", "v1")]:
                [other] = await deployments.find(workflow_name, version_id)
                assert other.running
                assert not await harness.is_gone(other)
        finally:
            await deployments.close()

    async def test_delete_is_idempotent(self, harness: DeploymentsHarness) -> None:
        await harness.create("orders", "v1")
        first, second = harness.open(), harness.open()
        try:
            [deployment] = await first.find("orders", "v1")
            await first.delete(deployment)
            await first.delete(deployment)
            await second.delete(deployment)  # a stale copy, from someone who found it before
            assert await second.find("orders", "v1") == []
            assert await harness.is_gone(deployment)
        finally:
            await first.close()
            await second.close()

    async def test_a_stale_delete_spares_a_deployment_created_since(self, harness: DeploymentsHarness) -> None:
        await harness.create("orders", "v1")
        deployments = harness.open()
        try:
            [old] = await deployments.find("orders", "v1")
            await deployments.delete(old)
            await harness.create("orders", "v1")  # redeployed since: a new incarnation under the same name
            [new] = await deployments.find("orders", "v1")
            assert new.uid != old.uid
            await deployments.delete(old)
            assert await deployments.find("orders", "v1") == [new]
            assert not await harness.is_gone(new)
        finally:
            await deployments.close()

    async def test_found_again_after_a_restart(self, harness: DeploymentsHarness) -> None:
        await harness.create("orders", "v1")
        before = harness.open()
        [found] = await before.find("orders", "v1")
        await before.close()

        after = harness.open()
        try:
            assert await after.find("orders", "v1") == [found]
            await after.delete(found)
            await eventually(lambda: harness.is_gone(found), what="the workers stopped")
        finally:
            await after.close()
        again = harness.open()
        try:
            assert await again.find("orders", "v1") == []
        finally:
            await again.close()

    async def test_list_versions_of_one_workflow(self, harness: DeploymentsHarness) -> None:
        for workflow_name, version_id in [("orders", "v2"), ("orders", "v1"), ("billing", "v3"), ("orders-x", "v4")]:
            await harness.create(workflow_name, version_id)
        deployments = harness.open()
        try:
            assert await deployments.list_versions("orders") == ["v1", "v2"]
            assert await deployments.list_versions("billing") == ["v3"]
            assert await deployments.list_versions("shipping") == []
        finally:
            await deployments.close()

    @pytest.mark.parametrize(
        ("workflow_name", "version_id"),
        [("bad.name", "v1"), ("orders", "v.1"), ("", "v1"), ("orders", ""), ("orders", "v 1"), ("-x", "v1")],
    )
    async def test_bad_names_are_rejected(
        self, harness: DeploymentsHarness, workflow_name: str, version_id: str
    ) -> None:
        deployments = harness.open()
        try:
            with pytest.raises(InvalidInput):
                await deployments.find(workflow_name, version_id)
        finally:
            await deployments.close()

    @pytest.mark.parametrize("workflow_name", ["bad.name", "", "a b", "a/b"])
    async def test_bad_workflow_names_are_rejected_by_list_versions(
        self, harness: DeploymentsHarness, workflow_name: str
    ) -> None:
        deployments = harness.open()
        try:
            with pytest.raises(InvalidInput):
                await deployments.list_versions(workflow_name)
        finally:
            await deployments.close()
