"""A Kubernetes API for tests: kmock's emulator served over real HTTP, with the gaps our code path meets filled.

No kube-apiserver can run here. kmock 0.8 serves Deployment create/list/get/delete with Kubernetes-shaped errors, but
it ignores label selectors (so a buggy client would look right), assigns no ``uid`` and ignores ``DeleteOptions``
preconditions, and runs no controllers. Filled here:

- ``KubeEmulator._handle`` (before kmock stores anything): on create, ``metadata.uid``, ``creationTimestamp``,
  ``resourceVersion``, ``generation`` and the status a deployment controller would set once its pods are ready;
  on delete, ``preconditions.uid`` checked like the API server does (409 Conflict on a mismatch). These must run
  before kmock's own bookkeeping, which a reaction cannot do;
- a reaction on listing Deployments that applies ``labelSelector`` (equality, inequality, existence) and
  ``limit``/``continue`` paging, so the selector the client sends really decides what comes back;
- ``Cluster.fail``: the next N matching requests answered with an error status (403, 503...), also checked in
  ``_handle``, so that a failed delete really deletes nothing.

PUT and ``/version/`` (other kmock gaps) are not filled: nothing here sends them.

Import with ``from kmock_fixtures import ...`` (pytest puts ``tests/`` on ``sys.path``); each test module wraps
``running_cluster`` in its own fixture.
"""

from __future__ import annotations

import contextlib
import itertools
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import kmock
import yaml

from diachronic.workers.kubernetes import KubernetesWorkers, load_kube_config

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
TOKEN = "kmock-test-token-s3cr3t"


@dataclass
class _Failure:
    """The next ``times`` requests of ``action`` on Deployments fail, before anything changes (as on a real server)."""

    action: kmock.action
    status: int
    times: int | None
    reason: str
    message: str

    def matches(self, request: kmock.Request) -> bool:
        if request.resource != DEPLOYMENTS or request.action != self.action or self.times == 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True

    def raise_it(self) -> None:
        raise kmock.KubernetesError(
            status=self.status, reason=self.reason or None, message=self.message or None, details={}
        )


class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus what the API server does on writes that kmock does not (see the module doc)."""

    _versions = itertools.count(1)
    _failures: list[_Failure] | None = None

    def fail(self, failure: _Failure) -> None:
        if self._failures is None:
            self._failures = []
        self._failures.append(failure)

    async def _handle(self, request: kmock.Request) -> Any:
        for failure in self._failures or []:
            if failure.matches(request):
                failure.raise_it()
        if request.resource == DEPLOYMENTS and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._stamp(request.data)
            elif request.action == kmock.action.DELETE and request.name is not None:
                self._check_preconditions(request)
        return await super()._handle(request)

    def _stamp(self, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        replicas = obj.get("spec", {}).get("replicas", 1)
        obj["status"] = {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}

    def _check_preconditions(self, request: kmock.Request) -> None:
        wanted = (request.data.get("preconditions") or {}).get("uid")
        key = (DEPLOYMENTS, request.namespace, request.name)
        if wanted is None or key not in self.objects or self.objects[key].deleted:
            return  # a missing object is kmock's 404 to give
        actual = self.objects[key].get("metadata", {}).get("uid")
        if actual != wanted:
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f"Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}",
                details={"name": request.name, "group": "apps", "kind": "deployments"},
            )


def _requirement(expression: str) -> Callable[[dict[str, str]], bool]:
    """One term of a label selector, as the API server parses it (set-based terms are not needed here)."""
    expression = expression.strip()
    if "!=" in expression:
        key, value = expression.split("!=", 1)
        return lambda labels: labels.get(key.strip()) != value.strip()
    if "=" in expression:
        key, value = expression.replace("==", "=").split("=", 1)
        return lambda labels: labels.get(key.strip()) == value.strip()
    if expression.startswith("!"):
        return lambda labels: expression[1:].strip() not in labels
    if expression and all(c.isalnum() or c in "-_./" for c in expression):
        return lambda labels: expression in labels
    raise kmock.KubernetesError(status=400, reason="BadRequest", message=f"unable to parse requirement {expression!r}")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    return all(_requirement(term)(labels) for term in selector.split(",") if term.strip())


@dataclass
class Cluster:
    """A running emulated API server, with helpers to populate it and to look at it without the code under test."""

    api: KubeEmulator
    url: str
    kubeconfig: Path
    selectors: bool = True  # False: behave like plain kmock, which ignores selectors
    verify: ssl.SSLContext | bool = True
    created: list[dict[str, Any]] = field(default_factory=list)

    def open(self, *, namespace: str | None = None) -> KubernetesWorkers:
        """The code under test, configured from the kubeconfig file as a user would."""
        return KubernetesWorkers(load_kube_config(self.kubeconfig), namespace=namespace)

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Deployment through the API (as ``kubectl apply`` would for a new one)."""
        namespace = manifest.get("metadata", {}).get("namespace", "default")
        async with httpx2.AsyncClient(base_url=self.url, verify=self.verify) as client:
            response = await client.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=manifest)
        assert response.status_code < 300, response.text
        created: dict[str, Any] = response.json()
        self.created.append(created)
        return created

    def live(self, namespace: str, name: str) -> dict[str, Any] | None:
        key = (DEPLOYMENTS, namespace, name)
        if key not in self.api.objects or self.api.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.api.objects[key].raw
        return raw

    def live_names(self) -> set[tuple[str, str]]:
        return {
            (ns, name) for (res, ns, name), obj in self.api.objects.items() if res == DEPLOYMENTS and not obj.deleted
        }

    def requests(self, action: str | None = None) -> list[kmock.Request]:
        """Requests about Deployments that reached the server, optionally of one kmock action (list, fetch...)."""
        found = [r for r in self.api if r.resource == DEPLOYMENTS]
        return found if action is None else [r for r in found if r.action == kmock.action.guess(action)]

    def fail(self, action: str, status: int, *, times: int | None = None, reason: str = "", message: str = "") -> None:
        """Answer the next ``times`` (None: all) requests of ``action`` on Deployments with an error ``Status``.

        Injected ahead of kmock's bookkeeping: kmock applies a create or delete before any reaction runs, so a
        reaction could only fake the error of a write that happened all the same."""
        self.api.fail(_Failure(kmock.action.guess(action), status, times, reason, message))


def _list_deployments(cluster: Cluster) -> Callable[[kmock.Request], dict[str, Any]]:
    def serve(request: kmock.Request) -> dict[str, Any]:
        selector = request.params.get("labelSelector", "") if cluster.selectors else ""
        items = [
            obj.raw
            for (res, namespace, _), obj in sorted(cluster.api.objects.items(), key=lambda kv: kv[0][1:])
            if res == DEPLOYMENTS and not obj.deleted
            if request.namespace is None or namespace == request.namespace
            if selector_matches(selector, obj.raw.get("metadata", {}).get("labels") or {})
        ]
        start = int(request.params.get("continue") or 0)
        limit = int(request.params.get("limit") or 0) or len(items)
        page, rest = items[start : start + limit], items[start + limit :]
        metadata = {"resourceVersion": "1", **({"continue": str(start + limit)} if rest else {})}
        return {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": metadata, "items": page}

    return serve


def write_kubeconfig(path: Path, server: str, token: str = TOKEN) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "ci", "user": {"token": token}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "ci"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def running_cluster(folder: Path) -> AsyncIterator[Cluster]:
    """An emulated API server on a free loopback port, and a kubeconfig for it in ``folder``."""
    async with KubeEmulator() as api, kmock.Server(api) as server:
        api.resources.load_bundled()
        url = str(server.url).rstrip("/")
        cluster = Cluster(api, url, write_kubeconfig(folder / "kubeconfig", url))
        api[DEPLOYMENTS, kmock.action.LIST] << _list_deployments(cluster)
        yield cluster
