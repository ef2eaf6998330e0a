"""Kubernetes manifests: diachronic itself in a cluster, and the versioned worker Deployment of a workflow.

``cluster_manifests`` is what ``diachronic k8s manifests`` prints: a ServiceAccount whose ClusterRole (or Role, when
workers live in one namespace) allows only get/list/watch/delete on ``apps/deployments``; the CI worker
(``diachronic worker``), the only pod that talks to the Kubernetes API; the HTTP app (``diachronic serve``: webhook,
signaler, dashboard) with its Service, which gets no API token at all; it keeps no state, so it runs as two replicas.
Tokens (and Temporal's API key) come from one Secret by ``secretKeyRef``; an mTLS client certificate from a
``kubernetes.io/tls`` Secret and private CAs from ConfigMaps, mounted read-only. No Secret is ever generated, so no
secret value ever passes through diachronic's output (docs/production.md).

``worker_deployment`` is what ``diachronic k8s worker-manifest`` prints for users' CD pipelines: one Deployment per
version, labelled so that the CI finds it, polling ``<workflowName>-<versionId>``.

Everything returns plain dicts (tests validate them against lightkube's Kubernetes models); ``dump_yaml`` prints them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from diachronic import __version__
from diachronic.errors import InvalidInput
from diachronic.k8s.names import check_namespace, check_object_name, worker_deployment_name
from diachronic.workers import worker_labels

__all__ = [
    "APP_REPLICAS",
    "APP_SECRETS",
    "SECRET_KEYS",
    "WORKER_SECRETS",
    "ClusterOptions",
    "cluster_manifests",
    "dump_yaml",
    "secret_keys",
    "worker_deployment",
]

Manifest = dict[str, Any]

NAME = "diachronic"
SERVICE_ACCOUNT = "diachronic"
CI_WORKER = "diachronic-ci-worker"
APP = "diachronic-app"
DATA_DIR = "/var/lib/diachronic"
RBAC_VERBS = ["get", "list", "watch", "delete"]
DEFAULT_NAMESPACE = "diachronic"
DEFAULT_TEMPORAL_ADDRESS = "temporal-frontend.temporal.svc.cluster.local:7233"
DEFAULT_UNLEASH_URL = "http://unleash.unleash.svc.cluster.local:4242"
DEFAULT_SECRET = "diachronic"
DEFAULT_PORT = 8080
APP_REPLICAS = 2  # stateless (GitHub deliveries are de-duplicated by Temporal): any number serves
TEMPORAL_TLS_DIR = "/etc/diachronic/temporal-tls"  # the kubernetes.io/tls Secret: tls.crt, tls.key
TEMPORAL_CA_DIR = "/etc/diachronic/temporal-ca"  # ConfigMap key ca.crt
UNLEASH_CA_DIR = "/etc/diachronic/unleash-ca"  # ConfigMap key ca.crt

# Environment variable -> key in the Secret. The CI worker needs only the Unleash tokens; the HTTP app all four.
SECRET_KEYS = {
    "DIACHRONIC_UNLEASH_ADMIN_TOKEN": "unleash-admin-token",
    "DIACHRONIC_UNLEASH_CLIENT_TOKEN": "unleash-client-token",
    "DIACHRONIC_GITHUB_WEBHOOK_SECRET": "github-webhook-secret",
    "DIACHRONIC_SIGNALER_TOKEN": "signaler-token",
    "DIACHRONIC_TEMPORAL_API_KEY": "temporal-api-key",  # only with ClusterOptions.temporal_api_key
}
WORKER_SECRETS = ("DIACHRONIC_UNLEASH_ADMIN_TOKEN", "DIACHRONIC_UNLEASH_CLIENT_TOKEN")
APP_SECRETS = (*WORKER_SECRETS, "DIACHRONIC_GITHUB_WEBHOOK_SECRET", "DIACHRONIC_SIGNALER_TOKEN")

_POD_SECURITY: Manifest = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
_RESOURCES: Manifest = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
_IMAGE = re.compile(r"^\S+$")


@dataclass(frozen=True)
class ClusterOptions:
    """What differs between clusters; the defaults name the usual in-cluster services of Temporal and Unleash.

    ``workers_namespace=None``: the CI deletes worker Deployments in every namespace (ClusterRole); a namespace
    limits it to that one (Role there). ``unleash_environment=None`` keeps diachronic's default.

    Temporal behind TLS: ``temporal_tls`` (the system's CAs), ``temporal_api_key`` (key ``temporal-api-key`` of the
    Secret; turns TLS on), ``temporal_tls_secret`` (a ``kubernetes.io/tls`` Secret: the mTLS client certificate),
    ``temporal_ca_configmap`` / ``unleash_ca_configmap`` (a ConfigMap whose ``ca.crt`` is a private CA)."""

    image: str
    namespace: str = DEFAULT_NAMESPACE
    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    temporal_namespace: str = "default"
    unleash_url: str = DEFAULT_UNLEASH_URL
    unleash_environment: str | None = None
    workers_namespace: str | None = None
    secret_name: str = DEFAULT_SECRET
    port: int = DEFAULT_PORT
    temporal_tls: bool = False
    temporal_api_key: bool = False
    temporal_tls_secret: str | None = None
    temporal_ca_configmap: str | None = None
    unleash_ca_configmap: str | None = None

    def check(self) -> None:
        _check_image(self.image)
        check_namespace(self.namespace)
        if self.workers_namespace is not None:
            check_namespace(self.workers_namespace)
        for name in (self.secret_name, self.temporal_tls_secret, self.temporal_ca_configmap, self.unleash_ca_configmap):
            if name is not None:
                check_object_name(name)
        for value, what in [
            (self.temporal_address, "Temporal address"),
            (self.temporal_namespace, "Temporal namespace"),
            (self.unleash_url, "Unleash URL"),
        ]:
            if not value or any(c.isspace() for c in value):
                raise InvalidInput(f"the {what} must not be empty or contain spaces: {value!r}")
        if not 1 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} is not a TCP port")


# -- users' worker Deployments -------------------------------------------------------------------------------------


def worker_deployment(
    workflow_name: str,
    version_id: str,
    *,
    image: str,
    replicas: int = 1,
    namespace: str | None = None,
    temporal_address: str | None = None,
    temporal_namespace: str | None = None,
) -> Manifest:
    """The Deployment of one version's workers: both labels on it, its selector and its pods; the task queue in
    ``DIACHRONIC_TASK_QUEUE``. The selector is exactly the version, so versions never adopt each other's pods."""
    name = worker_deployment_name(workflow_name, version_id)  # checks both names first
    _check_image(image)
    if replicas < 0:
        raise InvalidInput(f"replicas must be 0 or more, not {replicas}")
    labels = worker_labels(workflow_name, version_id)
    env = [
        _env("DIACHRONIC_TASK_QUEUE", f"{workflow_name}-{version_id}"),
        _env("DIACHRONIC_WORKFLOW_NAME", workflow_name),
        _env("DIACHRONIC_VERSION_ID", version_id),
    ]
    if temporal_address:
        env.append(_env("DIACHRONIC_TEMPORAL_ADDRESS", temporal_address))
    if temporal_namespace:
        env.append(_env("DIACHRONIC_TEMPORAL_NAMESPACE", temporal_namespace))
    metadata: Manifest = {"name": name}
    if namespace is not None:
        metadata["namespace"] = check_namespace(namespace)
    metadata["labels"] = dict(labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "worker", "image": image, "env": env}]},
            },
        },
    }


# -- diachronic itself ---------------------------------------------------------------------------------------------


def cluster_manifests(options: ClusterOptions) -> list[Manifest]:
    """ServiceAccount, RBAC, CI worker, HTTP app and its Service, in the order ``kubectl apply`` needs them."""
    options.check()
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(SERVICE_ACCOUNT, options.namespace, "ci-worker"),
        },
        *_rbac(options),
        _ci_worker(options),
        _app(options),
        _service(options),
    ]


def _rbac(options: ClusterOptions) -> list[Manifest]:
    """Only what cleanup needs: read and delete Deployments of group ``apps``; nothing on pods, secrets..."""
    rules = [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": list(RBAC_VERBS)}]
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": options.namespace}
    if options.workers_namespace is None:
        name = f"diachronic-worker-cleanup-{options.namespace}"  # cluster-wide names: one per installation
        role: Manifest = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(name, None, "rbac"),
            "rules": rules,
        }
        binding: Manifest = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(name, None, "rbac"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [subject],
        }
    else:
        name = "diachronic-worker-cleanup"
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(name, options.workers_namespace, "rbac"),
            "rules": rules,
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(name, options.workers_namespace, "rbac"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        }
    return [role, binding]


def secret_keys(options: ClusterOptions) -> list[str]:
    """The keys the Secret ``options.secret_name`` must hold."""
    names = [*APP_SECRETS, *(["DIACHRONIC_TEMPORAL_API_KEY"] if options.temporal_api_key else [])]
    return [SECRET_KEYS[name] for name in names]


def _ci_worker(options: ClusterOptions) -> Manifest:
    env = [*_common_env(options), _env("DIACHRONIC_WORKERS", "kubernetes")]
    if options.workers_namespace is not None:
        env.append(_env("DIACHRONIC_KUBERNETES_NAMESPACE", options.workers_namespace))
    env.extend(_secret_env(options, WORKER_SECRETS))
    container = _container("ci-worker", options, ["diachronic", "worker"], env)
    pod = _pod_spec(container, options, service_account=SERVICE_ACCOUNT)
    return _deployment(CI_WORKER, options.namespace, "ci-worker", pod)


def _app(options: ClusterOptions) -> Manifest:
    env = [*_common_env(options), *_secret_env(options, APP_SECRETS)]
    command = ["diachronic", "serve", "--host", "0.0.0.0", "--port", str(options.port)]
    container = _container("app", options, command, env)
    container["ports"] = [{"name": "http", "containerPort": options.port, "protocol": "TCP"}]
    container["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "initialDelaySeconds": 2}
    container["livenessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "initialDelaySeconds": 15}
    pod = _pod_spec(container, options, service_account=None)  # serves HTTP: no Kubernetes API token in this pod
    return _deployment(APP, options.namespace, "app", pod, replicas=APP_REPLICAS)


def _service(options: ClusterOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(APP, options.namespace, "app"),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector("app"),
            "ports": [{"name": "http", "port": options.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _common_env(options: ClusterOptions) -> list[Manifest]:
    env = [
        _env("DIACHRONIC_TEMPORAL_ADDRESS", options.temporal_address),
        _env("DIACHRONIC_TEMPORAL_NAMESPACE", options.temporal_namespace),
        _env("DIACHRONIC_FLAGS", "unleash"),
        _env("DIACHRONIC_UNLEASH_URL", options.unleash_url),
        _env("DIACHRONIC_DATA_DIR", DATA_DIR),
    ]
    if options.unleash_environment is not None:  # the deployment environment served is the flags' environment
        env.append(_env("DIACHRONIC_ENVIRONMENT", options.unleash_environment))
        env.append(_env("DIACHRONIC_UNLEASH_ENVIRONMENT", options.unleash_environment))
    if options.temporal_tls or options.temporal_tls_secret or options.temporal_ca_configmap:
        env.append(_env("DIACHRONIC_TEMPORAL_TLS", "true"))
    if options.temporal_tls_secret is not None:
        env.append(_env("DIACHRONIC_TEMPORAL_TLS_CERT", f"{TEMPORAL_TLS_DIR}/tls.crt"))
        env.append(_env("DIACHRONIC_TEMPORAL_TLS_KEY", f"{TEMPORAL_TLS_DIR}/tls.key"))
    if options.temporal_ca_configmap is not None:
        env.append(_env("DIACHRONIC_TEMPORAL_TLS_CA", f"{TEMPORAL_CA_DIR}/ca.crt"))
    if options.unleash_ca_configmap is not None:
        env.append(_env("DIACHRONIC_UNLEASH_CA_BUNDLE", f"{UNLEASH_CA_DIR}/ca.crt"))
    if options.temporal_api_key:
        env.extend(_secret_env(options, ["DIACHRONIC_TEMPORAL_API_KEY"]))
    return env


def _secret_env(options: ClusterOptions, names: Iterable[str]) -> list[Manifest]:
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": options.secret_name, "key": SECRET_KEYS[name]}}}
        for name in names
    ]


def _mounted(options: ClusterOptions) -> list[tuple[str, str, Manifest]]:
    """(volume name, mount path, volume source) of the read-only files: mTLS client certificate, private CAs."""
    mounts = []
    if options.temporal_tls_secret is not None:
        source = {"secret": {"secretName": options.temporal_tls_secret, "defaultMode": 0o440}}
        mounts.append(("temporal-tls", TEMPORAL_TLS_DIR, source))
    if options.temporal_ca_configmap is not None:
        mounts.append(("temporal-ca", TEMPORAL_CA_DIR, {"configMap": {"name": options.temporal_ca_configmap}}))
    if options.unleash_ca_configmap is not None:
        mounts.append(("unleash-ca", UNLEASH_CA_DIR, {"configMap": {"name": options.unleash_ca_configmap}}))
    return mounts


def _container(name: str, options: ClusterOptions, command: list[str], env: list[Manifest]) -> Manifest:
    return {
        "name": name,
        "image": options.image,
        "command": command,
        "env": env,
        "resources": copy.deepcopy(_RESOURCES),  # shared objects would print as YAML anchors
        "securityContext": copy.deepcopy(_CONTAINER_SECURITY),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            *({"name": volume, "mountPath": path, "readOnly": True} for volume, path, _ in _mounted(options)),
        ],
    }


def _pod_spec(container: Manifest, options: ClusterOptions, *, service_account: str | None) -> Manifest:
    spec: Manifest = (
        {"automountServiceAccountToken": False} if service_account is None else {"serviceAccountName": service_account}
    )
    spec["securityContext"] = copy.deepcopy(_POD_SECURITY)
    spec["containers"] = [container]
    spec["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        *({"name": volume, **source} for volume, _, source in _mounted(options)),
    ]
    return spec


def _deployment(name: str, namespace: str, component: str, pod: Manifest, *, replicas: int = 1) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _selector(component)},
            "template": {"metadata": {"labels": _selector(component)}, "spec": pod},
        },
    }


def _meta(name: str, namespace: str | None, component: str) -> Manifest:
    labels = {**_selector(component), "app.kubernetes.io/version": __version__}
    meta: Manifest = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = labels
    return meta


def _selector(component: str) -> dict[str, str]:
    """Stable labels only: a selector is immutable, so the version label stays out of it."""
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": component}


def _env(name: str, value: str) -> Manifest:
    return {"name": name, "value": value}


def _check_image(image: str) -> None:
    if not _IMAGE.match(image):
        raise InvalidInput(f"image {image!r} must be a non-empty image reference without spaces")


# -- output --------------------------------------------------------------------------------------------------------


class _PlainDumper(yaml.SafeDumper):
    """Never ``&id001``/``*id001``: an object used twice is printed twice, as people and kubectl expect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(documents: Iterable[Manifest], *, header: str | None = None) -> str:
    """Multi-document YAML, keys in the order written (``kind`` and ``metadata`` first, as people read them)."""
    body = yaml.dump_all(
        list(documents), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, explicit_start=True
    )
    if header is None:
        return body
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comment + body
