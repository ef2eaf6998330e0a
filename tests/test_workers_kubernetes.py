"""Kubernetes worker sets against an emulated API server over real HTTP (kmock): the shared contract, plus
what only a cluster shows (namespaces, label selectors that a server may ignore, RBAC refusals, transient errors,
re-created Deployments, configuration from a kubeconfig file or a pod's service account)."""

from __future__ import annotations

import logging
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import kmock
import pytest
from aiohttp.test_utils import RawTestServer
from tests.tls_fixtures import Pki

from diachronic.backends import open_workers
from diachronic.ci.activities import to_application_error
from diachronic.errors import HTTP_CLIENT_ERRORS, ConfigError, InvalidInput, WorkersError
from diachronic.k8s.manifests import worker_deployment
from diachronic.settings import load_settings
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW, WorkerBackend, WorkerSet
from diachronic.workers.kubernetes import KubernetesWorkers, load_kube_config
from http_client_errors import HTTPX2_EXCEPTIONS, instance_of
from kmock_fixtures import DEPLOYMENTS, TOKEN, Cluster, KubeEmulator, running_cluster, write_kubeconfig
from workers_contract import DeploymentsContract

pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")  # inside kmock
IMAGE = "registry.example/orders-worker:1"


def manifest(workflow_name: str, version_id: str, namespace: str = "default", **kw: Any) -> dict[str, Any]:
    """What a user's pipeline applies: the output of ``diachronic k8s worker-manifest``."""
    return worker_deployment(workflow_name, version_id, image=IMAGE, namespace=namespace, **kw)


def labelled(labels: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    """A Deployment with exactly these labels (hand-made, not by diachronic)."""
    selector = {"app": f"x-{uuid.uuid4().hex[:8]}"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": selector["app"], "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}},
        },
    }


class KubernetesHarness:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def open(self) -> WorkerBackend:
        return self.cluster.open()

    async def create(self, workflow_name: str, version_id: str) -> None:
        await self.cluster.apply(manifest(workflow_name, version_id))

    async def create_labelled(self, labels: dict[str, str]) -> None:
        await self.cluster.apply(labelled(labels))

    async def is_gone(self, deployment: WorkerSet) -> bool:
        live = self.cluster.live(deployment.namespace, deployment.name)
        return live is None or live["metadata"]["uid"] != deployment.uid


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path) as running:
        yield running


class TestKubernetesDeploymentsContract(DeploymentsContract):
    @pytest.fixture
    async def harness(self, cluster: Cluster) -> KubernetesHarness:
        return KubernetesHarness(cluster)


# -- finding -------------------------------------------------------------------------------------------------------


async def test_find_sends_a_label_selector_and_reads_what_the_pods_poll(cluster: Cluster) -> None:
    await cluster.apply(manifest("orders", "v1", replicas=3))
    deployments = cluster.open()
    try:
        [found] = await deployments.find("orders", "v1")
    finally:
        await deployments.close()
    [listing] = cluster.requests("list")
    assert listing.params["labelSelector"] == "diachronic/workflow-name=orders,diachronic/version-id=v1"
    assert listing.namespace is None  # all namespaces
    assert listing.headers["Authorization"] == f"Bearer {TOKEN}"  # from the kubeconfig
    assert found.task_queue == "orders-v1"
    assert found.replicas == 3 and found.running
    assert found.uid == cluster.live("default", found.name)["metadata"]["uid"]  # type: ignore[index]
    assert found.started_at is not None


async def test_labels_are_checked_again_when_the_server_ignores_the_selector(cluster: Cluster) -> None:
    cluster.selectors = False  # plain kmock: every Deployment comes back, whatever the selector
    for workflow_name, version_id in [("orders", "v1"), ("orders", "v2"), ("orders-v1", "x"), ("billing", "v1")]:
        await cluster.apply(manifest(workflow_name, version_id))
    await cluster.apply(labelled({LABEL_WORKFLOW: "orders"}))
    await cluster.apply(labelled({LABEL_VERSION: "v1"}))
    await cluster.apply(labelled({"app": "orders"}))
    deployments = cluster.open()
    try:
        found = await deployments.find("orders", "v1")
        assert [(d.workflow_name, d.version_id) for d in found] == [("orders", "v1")]
        assert await deployments.list_versions("orders") == ["v1", "v2"]
    finally:
        await deployments.close()


async def test_pages_are_followed(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("diachronic.workers.kubernetes.PAGE_SIZE", 2)
    for i in range(5):
        await cluster.apply(manifest("orders", "v1", namespace=f"team-{i}"))
    deployments = cluster.open()
    try:
        found = await deployments.find("orders", "v1")
    finally:
        await deployments.close()
    assert sorted(d.namespace for d in found) == [f"team-{i}" for i in range(5)]
    assert [r.params.get("continue") for r in cluster.requests("list")] == [None, "2", "4"]


async def test_a_configured_namespace_limits_every_request(cluster: Cluster) -> None:
    await cluster.apply(manifest("orders", "v1", namespace="team-a"))
    elsewhere = await cluster.apply(manifest("orders", "v1", namespace="team-b"))
    deployments = cluster.open(namespace="team-a")
    try:
        [found] = await deployments.find("orders", "v1")
        assert found.namespace == "team-a"
        stray = found.model_copy(update={"namespace": "team-b", "uid": elsewhere["metadata"]["uid"]})
        with pytest.raises(InvalidInput, match="outside the configured namespace"):
            await deployments.delete(stray)
    finally:
        await deployments.close()
    assert [r.namespace for r in cluster.requests("list")] == ["team-a"]
    assert cluster.requests("fetch") == [] and cluster.requests("delete") == []
    assert ("team-b", found.name) in cluster.live_names()


# -- deleting ------------------------------------------------------------------------------------------------------


async def test_cleanup_deletes_only_that_version_across_namespaces(cluster: Cluster) -> None:
    for namespace in ("team-a", "team-b"):
        await cluster.apply(manifest("orders", "v1", namespace=namespace))
        await cluster.apply(manifest("orders", "v2", namespace=namespace))
    await cluster.apply(manifest("billing", "v1", namespace="team-a"))
    await cluster.apply(manifest("orders-v1", "x", namespace="team-a"))  # same task queue prefix, other workflow
    await cluster.apply(labelled({LABEL_WORKFLOW: "orders"}, namespace="team-a"))  # no version label
    await cluster.apply(labelled({LABEL_VERSION: "v1"}, namespace="team-b"))  # no workflow label
    before = cluster.live_names()
    deployments = cluster.open()
    try:
        old = await deployments.find("orders", "v1")
        assert [d.namespace for d in old] == ["team-a", "team-b"]
        for deployment in old:
            await deployments.delete(deployment)
        assert await deployments.find("orders", "v1") == []
    finally:
        await deployments.close()
    assert cluster.live_names() == before - {(d.namespace, d.name) for d in old}
    deletes = cluster.requests("delete")
    assert sorted((r.namespace, r.name) for r in deletes) == sorted((d.namespace, d.name) for d in old)
    for request, deployment in zip(deletes, old, strict=True):
        assert request.data["propagationPolicy"] == "Background"
        assert request.data["preconditions"] == {"uid": deployment.uid}


async def test_a_deployment_missing_a_label_is_never_deleted(cluster: Cluster) -> None:
    created = await cluster.apply(manifest("orders", "v1"))
    deployments = cluster.open()
    try:
        [found] = await deployments.find("orders", "v1")
        for label in (LABEL_WORKFLOW, LABEL_VERSION):
            unlabelled = found.model_copy(update={"labels": {k: v for k, v in found.labels.items() if k != label}})
            with pytest.raises(InvalidInput, match=f"lacks the label {label}"):
                await deployments.delete(unlabelled)
        assert cluster.requests("fetch") == [] and cluster.requests("delete") == []

        # Someone relabels the live Deployment after it was found: it is no longer ours to delete.
        cluster.api.objects[DEPLOYMENTS, "default", created["metadata"]["name"]].patch(
            {"metadata": {"labels": {LABEL_WORKFLOW: "orders", LABEL_VERSION: None}}}
        )
        await deployments.delete(found)
    finally:
        await deployments.close()
    assert cluster.requests("delete") == []
    assert cluster.live("default", found.name) is not None


async def test_delete_of_a_deployment_already_gone_succeeds(cluster: Cluster) -> None:
    await cluster.apply(manifest("orders", "v1"))
    deployments = cluster.open()
    try:
        [found] = await deployments.find("orders", "v1")
        cluster.api.objects[DEPLOYMENTS, "default", found.name].delete()  # someone ran kubectl delete
        await deployments.delete(found)
        cluster.fail("delete", 404, reason="NotFound")  # or it vanishes between our read and our delete
        await cluster.apply(manifest("orders", "v1"))
        [again] = await deployments.find("orders", "v1")
        await deployments.delete(again)
    finally:
        await deployments.close()
    assert [r.name for r in cluster.requests("delete")] == [again.name]


async def test_a_deployment_recreated_between_read_and_delete_is_spared(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.apply(manifest("orders", "v1"))
    deployments = cluster.open()
    try:
        [found] = await deployments.find("orders", "v1")
        key = (DEPLOYMENTS, "default", found.name)

        def read_then_recreate() -> dict[str, Any]:
            """Answer our read with the old object, then let someone delete and re-create it at once."""
            old: dict[str, Any] = cluster.api.objects[key].raw
            cluster.api.objects[key].delete()
            cluster.api.objects[key] = {**old, "metadata": {**old["metadata"], "uid": "new-uid"}}
            return old

        cluster.api[DEPLOYMENTS, kmock.action.FETCH][:1] ** 10 << read_then_recreate
        with caplog.at_level(logging.INFO, logger="diachronic.workers.kubernetes"):
            await deployments.delete(found)
    finally:
        await deployments.close()
    [delete] = cluster.requests("delete")
    assert delete.data["preconditions"] == {"uid": found.uid}
    assert "re-created meanwhile: not deleting it" in caplog.text  # the API server refused: 409 Conflict
    assert cluster.live("default", found.name)["metadata"]["uid"] == "new-uid"  # type: ignore[index]


async def test_bad_input_is_rejected_before_any_request(cluster: Cluster) -> None:
    deployments = cluster.open()
    try:
        for workflow_name, version_id in [
            ("orders-", "v1"),  # a label value must end with a letter or digit
            ("orders", "v1_"),
            ("o" * 64, "v1"),  # a label value holds at most 63 characters
            ("orders", "v" * 64),
            ("bad.name", "v1"),
        ]:
            with pytest.raises(InvalidInput) as raised:
                await deployments.find(workflow_name, version_id)
            assert "label value" in str(raised.value) or "may only contain" in str(raised.value)
        with pytest.raises(InvalidInput, match="label value"):
            await deployments.list_versions("orders_")
        good = {LABEL_WORKFLOW: "orders", LABEL_VERSION: "v1"}
        for name, namespace in [("../../api/v1/secrets", "default"), ("orders-v1", "Default"), ("a/b", "x")]:
            fake = WorkerSet(name=name, namespace=namespace, labels=good, running=True)
            with pytest.raises(InvalidInput):
                await deployments.delete(fake)
    finally:
        await deployments.close()
    assert cluster.requests() == []


# -- errors --------------------------------------------------------------------------------------------------------


async def test_forbidden_is_a_typed_non_retryable_error_naming_the_permission(cluster: Cluster) -> None:
    message = 'deployments.apps is forbidden: User "system:serviceaccount:diachronic:diachronic" cannot list'
    cluster.fail("list", 403, reason="Forbidden", message=message)
    deployments = cluster.open()
    try:
        with pytest.raises(WorkersError) as raised:
            await deployments.find("orders", "v1")
    finally:
        await deployments.close()
    error = raised.value
    assert not error.retryable and error.name == "WorkersError"
    assert "403 Forbidden" in error.message and "missing RBAC permission" in error.message
    assert "verb 'list' on resource 'deployments' in API group 'apps' in all namespaces" in error.message
    assert "ClusterRole" in error.message and "system:serviceaccount:diachronic:diachronic" in error.message
    assert TOKEN not in error.message
    assert len(cluster.requests("list")) == 1  # never retried


async def test_forbidden_delete_in_a_namespace_names_a_role(cluster: Cluster) -> None:
    await cluster.apply(manifest("orders", "v1", namespace="team-a"))
    cluster.fail("delete", 403, reason="Forbidden")
    deployments = cluster.open(namespace="team-a")
    try:
        [found] = await deployments.find("orders", "v1")
        with pytest.raises(WorkersError, match=r"verb 'delete' .* in namespace 'team-a'.* a Role") as raised:
            await deployments.delete(found)
    finally:
        await deployments.close()
    assert not raised.value.retryable


async def test_unauthorized_is_not_retryable_and_leaks_no_token(cluster: Cluster) -> None:
    cluster.fail("list", 401, reason="Unauthorized", message=f"invalid bearer token Bearer {TOKEN}")
    deployments = cluster.open()
    try:
        with pytest.raises(WorkersError) as raised:
            await deployments.list_versions("orders")
    finally:
        await deployments.close()
    assert not raised.value.retryable
    assert "401 Unauthorized" in raised.value.message and "service account token" in raised.value.message
    assert TOKEN not in raised.value.message and "Bearer ***" in raised.value.message


SERVER_ERRORS = {
    "list 503": ("list", 503, "ServiceUnavailable"),
    "read 500": ("fetch", 500, "InternalError"),
    "delete 503": ("delete", 503, "ServiceUnavailable"),
    "list 429": ("list", 429, "TooManyRequests"),
}


@pytest.mark.parametrize(("action", "status", "reason"), SERVER_ERRORS.values(), ids=SERVER_ERRORS)
async def test_server_errors_are_retryable_and_never_retried_here(
    cluster: Cluster, action: str, status: int, reason: str
) -> None:
    """One request, one typed retryable error: Temporal's activity retry policy is the one retry layer."""
    await cluster.apply(manifest("orders", "v1"))
    deployments = cluster.open()
    try:
        [found] = await deployments.find("orders", "v1")
        cluster.fail(action, status, times=1, reason=reason, message="etcd leader changed")
        step = deployments.find("orders", "v1") if action == "list" else deployments.delete(found)
        with pytest.raises(WorkersError) as raised:
            await step
        assert cluster.live("default", found.name) is not None  # a failed request changed nothing
        await deployments.delete(found)  # what the retried activity does
    finally:
        await deployments.close()
    assert raised.value.retryable and raised.value.retry_after_s is None
    assert f"answered {status}" in raised.value.message and "etcd leader changed" in raised.value.message
    assert TOKEN not in raised.value.message
    assert len(cluster.requests(action)) == 2  # the failed one, then the retried call's: none retried here
    assert cluster.live("default", found.name) is None


async def test_an_unreachable_server_is_a_retryable_error_after_one_attempt(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        url = cluster.url  # a port that was just free and is now closed
    deployments = KubernetesWorkers(load_kube_config(write_kubeconfig(tmp_path / "gone", url)))
    try:
        with pytest.raises(WorkersError, match=r"cannot reach the Kubernetes API at .*ConnectError") as raised:
            await deployments.find("orders", "v1")
    finally:
        await deployments.close()
    assert raised.value.retryable


async def test_too_many_requests_carries_the_servers_retry_after(cluster: Cluster) -> None:
    status = {"kind": "Status", "code": 429, "reason": "TooManyRequests", "message": "slow down"}
    cluster.api[DEPLOYMENTS, kmock.action.LIST][:1] ** 10 << kmock.Response(
        status=429, headers={"Retry-After": "3"}, payload=status
    )
    deployments = cluster.open()
    try:
        with pytest.raises(WorkersError) as raised:
            await deployments.find("orders", "v1")
        assert await deployments.find("orders", "v1") == []  # the retried call
    finally:
        await deployments.close()
    assert raised.value.retryable and raised.value.retry_after_s == 3.0
    assert "slow down" in raised.value.message
    assert to_application_error(raised.value).next_retry_delay == timedelta(seconds=3)  # what Temporal waits


@pytest.mark.parametrize("error_class", HTTPX2_EXCEPTIONS, ids=lambda c: c.__name__)
async def test_every_httpx2_error_becomes_a_typed_workers_error(cluster: Cluster, error_class: type[Exception]) -> None:
    """Meta-test: whatever lightkube's HTTP client raises, callers only ever see WorkersError, retryable as
    ``HTTP_CLIENT_ERRORS`` says (httpx's ``test_httpcore_all_exceptions_mapped`` is the model)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        raise instance_of(error_class, request)

    deployments = KubernetesWorkers(load_kube_config(cluster.kubeconfig), transport=httpx2.MockTransport(handler))
    try:
        with pytest.raises(WorkersError) as raised:
            await deployments.find("orders", "v1")
    finally:
        await deployments.close()
    assert raised.value.retryable is HTTP_CLIENT_ERRORS[error_class.__name__]
    assert TOKEN not in raised.value.message


# -- configuration -------------------------------------------------------------------------------------------------


async def test_settings_select_the_kubernetes_backend(cluster: Cluster) -> None:
    await cluster.apply(manifest("orders", "v1", namespace="team-a"))
    settings = load_settings(workers="kubernetes", kubeconfig=cluster.kubeconfig, kubernetes_namespace="team-a")
    deployments = open_workers(settings)
    try:
        assert isinstance(deployments, KubernetesWorkers)
        assert deployments.namespace == "team-a"
        assert [d.namespace for d in await deployments.find("orders", "v1")] == ["team-a"]
    finally:
        await deployments.close()


def test_configuration_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = tmp_path / "no-service-account"
    with pytest.raises(ConfigError, match="no Kubernetes configuration found"):
        load_kube_config(service_account=nowhere, environ={"KUBECONFIG": str(tmp_path / "missing")})
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    with pytest.raises(ConfigError, match="no Kubernetes configuration found"):
        load_kube_config(service_account=nowhere, environ={})
    broken = tmp_path / "broken"
    broken.write_text("users:\n- name: ci\n  user: {token: s3cr3t-token\n")
    with pytest.raises(ConfigError, match=r"cannot load .*broken: invalid YAML at line \d+") as raised:
        load_kube_config(broken)
    assert "s3cr3t" not in str(raised.value)  # YAML errors quote the line: never shown
    config = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="Context 'elsewhere' not found"):
        load_kube_config(config, "elsewhere")
    # $KUBECONFIG may list several files, as for kubectl: the first existing one is used.
    found = load_kube_config(service_account=nowhere, environ={"KUBECONFIG": f"{tmp_path / 'missing'}:{config}"})
    assert found.cluster.server == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="DIACHRONIC_KUBERNETES_NAMESPACE"):
        KubernetesWorkers(found, namespace="Team_A")


async def test_in_cluster_service_account_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a pod: https to KUBERNETES_SERVICE_HOST, the cluster CA, the mounted token (re-read when rotated)."""
    pki = Pki.create(tmp_path / "pki")  # the cluster's CA and its API server's certificate (for 127.0.0.1)
    cert = pki.ca
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server.cert, pki.server.key)

    class TlsServer(RawTestServer):
        async def start_server(self, **kwargs: Any) -> None:
            await super().start_server(ssl=tls, **kwargs)

    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token-1")
    (account / "namespace").write_text("diachronic")
    shutil.copy(cert, account / "ca.crt")

    async with KubeEmulator() as api, kmock.Server(api, server_cls=TlsServer) as server:
        api.resources.load_bundled()
        cluster = Cluster(api, str(server.url).rstrip("/"), tmp_path / "unused")
        cluster.verify = ssl.create_default_context(cafile=str(cert))
        await cluster.apply(manifest("orders", "v1"))
        untrusting = KubernetesWorkers(load_kube_config(write_kubeconfig(tmp_path / "no-ca", cluster.url)))
        try:  # a kubeconfig without the cluster's CA: the system's CAs do not vouch for this server
            with pytest.raises(WorkersError, match="certificate authority") as raised:
                await untrusting.find("orders", "v1")
            assert not raised.value.retryable
        finally:
            await untrusting.close()
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
        config = load_kube_config(service_account=account)
        assert config.cluster.server == f"https://127.0.0.1:{server.port}"
        deployments = KubernetesWorkers(config)
        try:
            assert [d.version_id for d in await deployments.find("orders", "v1")] == ["v1"]
            (account / "token").write_text("pod-token-2")  # the kubelet rotated it: read again after a 401
            cluster.fail("list", 401, times=1, reason="Unauthorized")
            assert [d.version_id for d in await deployments.find("orders", "v1")] == ["v1"]
        finally:
            await deployments.close()
        tokens = [r.headers["Authorization"] for r in cluster.requests("list")]
        assert tokens == ["Bearer pod-token-1", "Bearer pod-token-1", "Bearer pod-token-2"]
