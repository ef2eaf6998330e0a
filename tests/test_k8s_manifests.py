"""Manifests: diachronic in a cluster and users' worker Deployments, validated against lightkube's Kubernetes models
and checked for what the API server would refuse (selectors, ports, RBAC) and for what must never be in them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from lightkube import codecs
from typer.testing import CliRunner

import diachronic.cli.k8s  # noqa: F401  (registers the sub-app)
from diachronic.cli import app
from diachronic.errors import InvalidInput
from diachronic.k8s.manifests import (
    APP_SECRETS,
    SECRET_KEYS,
    WORKER_SECRETS,
    ClusterOptions,
    cluster_manifests,
    dump_yaml,
    secret_keys,
    worker_deployment,
)
from diachronic.k8s.names import worker_deployment_name
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW

Manifest = dict[str, Any]


def validate(document: Manifest) -> Manifest:
    """As ``kubectl apply --validate`` would: the model for apiVersion/kind must accept it with its types, and
    nothing may be lost on the way back (a misspelt or unknown field would be)."""
    resource = codecs.from_dict(document)
    assert resource.to_dict() == document
    if document["kind"] == "Deployment":
        spec = document["spec"]
        selector = spec["selector"]["matchLabels"]
        assert selector.items() <= spec["template"]["metadata"]["labels"].items()  # else: refused by the API
        for container in spec["template"]["spec"]["containers"]:
            names = [e["name"] for e in container.get("env", [])]
            assert len(names) == len(set(names))
    return document


def by_kind(documents: list[Manifest]) -> dict[str, list[Manifest]]:
    kinds: dict[str, list[Manifest]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], []).append(document)
    return kinds


def env_of(deployment: Manifest) -> list[Manifest]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env: list[Manifest] = container["env"]
    return env


def env_values(deployment: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in env_of(deployment) if "value" in e}


# -- worker Deployments ----------------------------------------------------------------------------------------------


def test_worker_deployment_carries_both_labels_and_its_task_queue() -> None:
    document = validate(
        worker_deployment("subscriptionWorkflow", "3f2a9c1", image="repo/worker:3f2a9c1", replicas=3, namespace="apps")
    )
    labels = {LABEL_WORKFLOW: "subscriptionWorkflow", LABEL_VERSION: "3f2a9c1"}
    assert document["metadata"] == {
        "name": worker_deployment_name("subscriptionWorkflow", "3f2a9c1"),
        "namespace": "apps",
        "labels": labels,
    }
    assert document["spec"]["selector"] == {"matchLabels": labels}
    assert document["spec"]["template"]["metadata"]["labels"] == labels
    assert document["spec"]["replicas"] == 3
    assert env_values(document) == {
        "DIACHRONIC_TASK_QUEUE": "subscriptionWorkflow-3f2a9c1",
        "DIACHRONIC_WORKFLOW_NAME": "subscriptionWorkflow",
        "DIACHRONIC_VERSION_ID": "3f2a9c1",
    }
    with_temporal = worker_deployment(
        "orders", "v1", image="w:1", temporal_address="temporal:7233", temporal_namespace="prod"
    )
    assert "namespace" not in validate(with_temporal)["metadata"]
    assert env_values(with_temporal)["DIACHRONIC_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env_values(with_temporal)["DIACHRONIC_TEMPORAL_NAMESPACE"] == "prod"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workflow_name": "orders-"}, "not a valid Kubernetes label value"),
        ({"version_id": "x" * 64}, "at most 63"),
        ({"image": ""}, "image"),
        ({"image": "a b"}, "image"),
        ({"replicas": -1}, "replicas"),
        ({"namespace": "Apps"}, "not a valid Kubernetes namespace"),
    ],
)
def test_worker_deployment_refuses_what_kubernetes_would(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"workflow_name": "orders", "version_id": "v1", "image": "w:1", **kwargs}
    with pytest.raises(InvalidInput, match=message):
        worker_deployment(args.pop("workflow_name"), args.pop("version_id"), **args)


# -- diachronic itself ---------------------------------------------------------------------------------------------


def test_cluster_manifests_validate_and_grant_only_deployment_cleanup() -> None:
    documents = [validate(d) for d in cluster_manifests(ClusterOptions(image="repo/diachronic:0.1.0"))]
    assert [d["kind"] for d in documents] == [
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Deployment", "Service",
    ]  # fmt: skip
    kinds = by_kind(documents)
    [account], [role], [binding] = kinds["ServiceAccount"], kinds["ClusterRole"], kinds["ClusterRoleBinding"]
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "delete"]}
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "diachronic", "namespace": "diachronic"}]
    assert account["metadata"]["name"] == "diachronic" and account["metadata"]["namespace"] == "diachronic"

    worker, app_deployment = kinds["Deployment"]
    worker_pod, app_pod = (d["spec"]["template"]["spec"] for d in (worker, app_deployment))
    assert worker_pod["containers"][0]["command"] == ["diachronic", "worker"]
    assert worker_pod["serviceAccountName"] == "diachronic"  # the only pod with a Kubernetes API token
    assert app_pod["automountServiceAccountToken"] is False and "serviceAccountName" not in app_pod
    assert app_pod["containers"][0]["command"][:2] == ["diachronic", "serve"]
    assert env_values(worker)["DIACHRONIC_WORKERS"] == "kubernetes"
    assert "DIACHRONIC_KUBERNETES_NAMESPACE" not in env_values(worker)  # all namespaces, as the ClusterRole
    for deployment in (worker, app_deployment):
        values = env_values(deployment)
        assert values["DIACHRONIC_FLAGS"] == "unleash"
        assert values["DIACHRONIC_TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc.cluster.local:7233"

    [service] = kinds["Service"]
    assert service["spec"]["selector"].items() <= app_deployment["spec"]["template"]["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    [container_port] = app_pod["containers"][0]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == container_port["name"] == "http"
    assert container_port["containerPort"] == 8080


def test_tokens_come_only_from_the_secret() -> None:
    documents = cluster_manifests(ClusterOptions(image="d:1", secret_name="diachronic-tokens"))
    worker, app_deployment = by_kind(documents)["Deployment"]
    for deployment, expected in [(worker, WORKER_SECRETS), (app_deployment, APP_SECRETS)]:
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env_of(deployment) if "valueFrom" in e}
        assert refs == {name: {"name": "diachronic-tokens", "key": SECRET_KEYS[name]} for name in expected}
        assert not set(SECRET_KEYS) & set(env_values(deployment))  # never a literal value
    assert set(APP_SECRETS) == {
        "DIACHRONIC_UNLEASH_ADMIN_TOKEN",
        "DIACHRONIC_UNLEASH_CLIENT_TOKEN",
        "DIACHRONIC_GITHUB_WEBHOOK_SECRET",
        "DIACHRONIC_SIGNALER_TOKEN",
    }
    assert not [d for d in documents if d["kind"] == "Secret"]


def test_the_http_app_runs_as_two_replicas_and_the_ci_worker_as_one() -> None:
    worker, app_deployment = by_kind(cluster_manifests(ClusterOptions(image="d:1")))["Deployment"]
    assert (worker["spec"]["replicas"], app_deployment["spec"]["replicas"]) == (1, 2)
    assert all("DIACHRONIC_TEMPORAL_TLS" not in env_values(d) for d in (worker, app_deployment))  # plain by default


def test_temporal_behind_mtls_an_api_key_and_private_cas() -> None:
    options = ClusterOptions(
        image="d:1",
        temporal_address="ns.acct.tmprl.cloud:7233",
        temporal_api_key=True,
        temporal_tls_secret="temporal-client",
        temporal_ca_configmap="corp-ca",
        unleash_ca_configmap="corp-ca",
    )
    documents = [validate(d) for d in cluster_manifests(options)]
    for deployment in by_kind(documents)["Deployment"]:
        values = env_values(deployment)
        assert values["DIACHRONIC_TEMPORAL_TLS"] == "true"
        assert values["DIACHRONIC_TEMPORAL_TLS_CERT"] == "/etc/diachronic/temporal-tls/tls.crt"
        assert values["DIACHRONIC_TEMPORAL_TLS_KEY"] == "/etc/diachronic/temporal-tls/tls.key"
        assert values["DIACHRONIC_TEMPORAL_TLS_CA"] == "/etc/diachronic/temporal-ca/ca.crt"
        assert values["DIACHRONIC_UNLEASH_CA_BUNDLE"] == "/etc/diachronic/unleash-ca/ca.crt"
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env_of(deployment) if "valueFrom" in e}
        assert refs["DIACHRONIC_TEMPORAL_API_KEY"] == {"name": "diachronic", "key": "temporal-api-key"}
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["temporal-tls"]["secret"] == {"secretName": "temporal-client", "defaultMode": 0o440}
        assert volumes["temporal-ca"]["configMap"] == volumes["unleash-ca"]["configMap"] == {"name": "corp-ca"}
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert all(mounts[p]["readOnly"] for p in ("/etc/diachronic/temporal-tls", "/etc/diachronic/temporal-ca"))
    assert secret_keys(options)[-1] == "temporal-api-key" and "temporal-api-key" not in secret_keys(
        ClusterOptions(image="d:1")
    )


def test_one_workers_namespace_gets_a_role_instead_of_a_cluster_role() -> None:
    options = ClusterOptions(image="d:1", namespace="cd", workers_namespace="apps", unleash_environment="production")
    documents = [validate(d) for d in cluster_manifests(options)]
    kinds = by_kind(documents)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    [role], [binding] = kinds["Role"], kinds["RoleBinding"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "apps"
    assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "diachronic", "namespace": "cd"}]
    worker = kinds["Deployment"][0]
    assert worker["metadata"]["namespace"] == "cd"
    assert env_values(worker)["DIACHRONIC_KUBERNETES_NAMESPACE"] == "apps"
    assert env_values(worker)["DIACHRONIC_UNLEASH_ENVIRONMENT"] == "production"


@pytest.mark.parametrize(
    "options",
    [
        ClusterOptions(image=""),
        ClusterOptions(image="d:1", namespace="CD"),
        ClusterOptions(image="d:1", workers_namespace="apps_1"),
        ClusterOptions(image="d:1", temporal_address=""),
        ClusterOptions(image="d:1", secret_name="My Secret"),
        ClusterOptions(image="d:1", port=0),
    ],
)
def test_bad_cluster_options_are_refused(options: ClusterOptions) -> None:
    with pytest.raises(InvalidInput):
        cluster_manifests(options)


def test_yaml_has_no_anchors_and_reads_back() -> None:
    documents = cluster_manifests(ClusterOptions(image="d:1"))
    text = dump_yaml(documents, header="line one\nline two")
    assert text.startswith("# line one\n# line two\n---\n")
    assert "&id" not in text and "*id" not in text  # shared objects would print as YAML anchors
    assert list(yaml.safe_load_all(text)) == documents


# -- the CLI -------------------------------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_manifests(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["k8s", "manifests", "--image", "repo/diachronic:1", "--namespace", "cd", "--temporal-address", "t:7233"]
    )
    assert result.exit_code == 0, result.output
    assert "kubectl -n cd create secret generic diachronic --from-literal=unleash-admin-token=..." in result.stdout
    documents = [validate(d) for d in yaml.safe_load_all(result.stdout)]
    assert {d["metadata"].get("namespace") for d in documents} == {"cd", None}  # None: cluster-scoped RBAC
    worker = by_kind(documents)["Deployment"][0]
    assert env_values(worker)["DIACHRONIC_TEMPORAL_ADDRESS"] == "t:7233"
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == "repo/diachronic:1"


def test_cli_manifests_needs_an_image_and_a_valid_namespace(runner: CliRunner) -> None:
    assert runner.invoke(app, ["k8s", "manifests"]).exit_code == 2
    result = runner.invoke(app, ["k8s", "manifests", "--image", "d:1", "--workers-namespace", "Apps"])
    assert result.exit_code == 1
    assert result.stdout == "" and "not a valid Kubernetes namespace" in result.stderr


def test_cli_worker_manifest(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["k8s", "worker-manifest", "orders", "abc123", "--image", "w:abc123", "--replicas", "2"]
    )
    assert result.exit_code == 0, result.output
    [document] = yaml.safe_load_all(result.stdout)
    assert validate(document) == worker_deployment("orders", "abc123", image="w:abc123", replicas=2)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["orders-", "v1", "--image", "w:1"], 1, "workflow name 'orders-' is not a valid Kubernetes label value"),
        (["orders", "v" * 64, "--image", "w:1"], 1, "at most 63"),
        (["orders", "v.1", "--image", "w:1"], 1, "may only contain letters, digits"),
        (["orders", "v1"], 2, "--image"),
        (["orders", "v1", "--image", "w:1", "--replicas", "-1"], 2, "--replicas"),
    ],
)
def test_cli_worker_manifest_rejects_bad_input(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["k8s", "worker-manifest", *args])
    assert result.exit_code == code
    assert result.stdout == ""
    assert message in " ".join(result.stderr.split())  # rich wraps long lines
