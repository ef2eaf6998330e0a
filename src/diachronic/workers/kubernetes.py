"""Kubernetes Deployments as worker sets (``DIACHRONIC_WORKERS=kubernetes``).

A version's workers are the ``apps/v1`` Deployments labelled ``diachronic/workflow-name=<workflowName>`` and
``diachronic/version-id=<versionId>``, in every namespace or in the one configured. ``find`` asks the API with a
label selector and checks both labels again on what comes back (an API server, proxy or emulator that ignores the
selector must never widen what gets deleted). ``delete`` reads the Deployment first, leaves it alone if it is
another incarnation or has lost a label, and deletes with background propagation and a ``uid`` precondition, so
a Deployment re-created under the same name in between is never the one deleted.

The client is lightkube: its kubeconfig and in-cluster loading, authentication (tokens, rotated service account
tokens, exec plugins, client certificates), TLS set-up and typed models. The requests (list, get, delete) are made
here on the HTTP client lightkube configures rather than through lightkube's ``AsyncClient``, because its
``delete`` cannot send ``DeleteOptions`` (no uid precondition), and one client means one authentication set-up and
one place (``_send``) where errors are translated: connection errors, 5xx and 429 become retryable
``WorkersError`` (never retried here: Temporal's activity retry policy does, honouring ``Retry-After``), 401/403
non-retryable ones naming the missing RBAC permission, 404 means already gone. Messages never carry credentials.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import yaml
from lightkube.config.client_adapter import AsyncClient, ConnectionParams
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, KubeConfig, SingleConfig
from lightkube.config.models import User
from lightkube.core.exceptions import ConfigError as LightkubeConfigError
from lightkube.models.apps_v1 import Deployment, DeploymentList

from diachronic import errors, workers
from diachronic.errors import ConfigError, InvalidInput, WorkersError
from diachronic.k8s.names import check_namespace, check_object_name
from diachronic.settings import Settings
from diachronic.workers import WorkerSet, check_names

__all__ = ["KubernetesWorkers", "load_kube_config"]

log = logging.getLogger(__name__)

API = "/apis/apps/v1"
RESOURCE = "deployments.apps"
PAGE_SIZE = 500
MESSAGE_LIMIT = 300
DEFAULT_KUBECONFIG = Path("~/.kube/config")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
HTTPX2_ERRORS = (httpx2.HTTPError, httpx2.InvalidURL, httpx2.CookieConflict, httpx2.StreamError)
"""Every exception httpx2 (lightkube's HTTP client) raises, the roots of its tree: all translated in ``_send``."""


@dataclass(frozen=True)
class _Call:
    """What a request does, in RBAC terms: the verb and where, so that a 403 can say what is missing."""

    verb: str
    namespace: str | None

    @property
    def scope(self) -> str:
        return "in all namespaces" if self.namespace is None else f"in namespace {self.namespace!r}"

    @property
    def grant(self) -> str:
        if self.namespace is None:
            return "a ClusterRole bound with a ClusterRoleBinding"
        return f"a Role in namespace {self.namespace!r} (or a ClusterRole) bound to it"


def load_kube_config(
    kubeconfig: Path | None = None,
    context: str | None = None,
    *,
    service_account: Path = Path(SERVICE_ACCOUNT),
    environ: Mapping[str, str] = os.environ,
) -> SingleConfig:
    """Where kubectl would look: ``kubeconfig`` if given; else the pod's service account when running in a
    cluster; else the first existing file of ``$KUBECONFIG``; else ``~/.kube/config``."""
    source = "the Kubernetes configuration"
    try:
        if kubeconfig is not None:
            source = str(kubeconfig)
            return _select(KubeConfig.from_file(kubeconfig), context)
        if (service_account / "token").is_file() and environ.get("KUBERNETES_SERVICE_HOST"):
            source = f"the pod's service account ({service_account})"
            return _select(KubeConfig.from_service_account(service_account), None)
        candidates = [Path(p) for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        candidates.append(DEFAULT_KUBECONFIG)
        for candidate in candidates:
            if candidate.expanduser().is_file():
                source = str(candidate)
                return _select(KubeConfig.from_file(candidate), context)
    except yaml.YAMLError as e:  # its text quotes the offending line, which may hold a token: position only
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"cannot load {source}: invalid YAML{where}") from None
    except (LightkubeConfigError, OSError, KeyError, TypeError, msgspec.ValidationError) as e:
        raise ConfigError(f"cannot load {source}: {type(e).__name__}: {e}") from e
    raise ConfigError(
        "no Kubernetes configuration found: not running in a cluster (no service account token at "
        f"{service_account}), no $KUBECONFIG file and no {DEFAULT_KUBECONFIG}; set DIACHRONIC_KUBECONFIG"
    )


def _select(config: KubeConfig, context: str | None) -> SingleConfig:
    single = config.get(context)
    if single is None:  # only with a default, which we never pass; keeps the type precise
        raise LightkubeConfigError("no current context")
    if single.user is None:  # e.g. a kubectl proxy: no credentials, which lightkube's adapter refuses
        single = single._replace(user=User())
    return single


class KubernetesWorkers:
    """Worker Deployments in a Kubernetes cluster; implements ``WorkerBackend``.

    ``namespace=None`` looks in every namespace (needs a ClusterRole); a namespace limits every request to it
    (a Role there is enough).
    """

    def __init__(
        self,
        config: SingleConfig,
        *,
        namespace: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        if namespace is not None:
            try:
                check_namespace(namespace)
            except InvalidInput as e:
                raise ConfigError(f"DIACHRONIC_KUBERNETES_NAMESPACE: {e}") from e
        self.namespace = namespace
        self.server = _without_userinfo(config.cluster.server)
        user = config.user or User()
        self._secrets = [s.strip() for s in (user.token, user.password) if s and s.strip()]
        # lightkube types ``transport`` for its sync client; its async client passes it to httpx2.AsyncClient as is.
        params = ConnectionParams(timeout=httpx2.Timeout(timeout_s), transport=transport)  # type: ignore[arg-type]
        try:
            self._http = AsyncClient(config, params)
        except (LightkubeConfigError, OSError) as e:  # unreadable CA or client certificate files
            raise ConfigError(self._redact(f"cannot set up the Kubernetes client for {self.server}: {e}")) from e

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesWorkers:
        config = load_kube_config(settings.kubeconfig, settings.kubernetes_context)
        return cls(config, namespace=settings.kubernetes_namespace or None)  # "" in a manifest = all

    # -- the port --------------------------------------------------------------------------------------------

    async def find(self, workflow_name: str, version_id: str) -> list[WorkerSet]:
        """The version's Deployments that are not being deleted already, sorted by name then namespace."""
        check_names(workflow_name, version_id)
        found = [
            _worker(d)
            for d in await self._list(workers.label_selector(workflow_name, version_id))
            if _named(d) and workers.labels_match(_labels(d), workflow_name, version_id) and not _deleting(d)
        ]
        return sorted(found, key=lambda d: (d.name, d.namespace))

    async def delete(self, deployment: WorkerSet) -> None:
        """Delete the Deployment ``find`` returned, if it is still that one and still labelled for its version.

        Background propagation: the call returns at once and Kubernetes' garbage collector stops the pods (each
        gets its termination grace period, so a Temporal worker can finish what it is doing)."""
        namespace, name = deployment.namespace, deployment.name
        workflow_name, version_id = deployment.workflow_name, deployment.version_id
        if workflow_name is None or version_id is None:
            missing = workers.LABEL_WORKFLOW if workflow_name is None else workers.LABEL_VERSION
            raise InvalidInput(f"deployment {namespace}/{name} lacks the label {missing}: diachronic never deletes it")
        check_names(workflow_name, version_id)
        check_namespace(namespace)
        check_object_name(name)
        if self.namespace is not None and namespace != self.namespace:
            raise InvalidInput(f"deployment {namespace}/{name} is outside the configured namespace {self.namespace!r}")

        path = f"{API}/namespaces/{namespace}/deployments/{name}"
        response = await self._send(_Call("get", namespace), "GET", path, accept={404})
        if response.status_code == 404:
            log.info("deployment %s/%s is already gone", namespace, name)
            return
        live = self._decode(response, Deployment, f"deployment {namespace}/{name}")
        uid = live.metadata.uid if live.metadata else None
        if deployment.uid is not None and uid != deployment.uid:
            log.info("deployment %s/%s was re-created since it was found: not deleting it", namespace, name)
            return
        if not workers.labels_match(_labels(live), workflow_name, version_id):
            log.warning(
                "deployment %s/%s no longer carries the labels of %s %s: not deleting it",
                namespace, name, workflow_name, version_id,
            )  # fmt: skip
            return
        if _deleting(live):
            log.info("deployment %s/%s is already being deleted", namespace, name)
            return
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid is not None:
            options["preconditions"] = {"uid": uid}
        response = await self._send(_Call("delete", namespace), "DELETE", path, body=options, accept={404, 409})
        if response.status_code == 409:  # the uid precondition failed: re-created between our read and delete
            log.info("deployment %s/%s was re-created meanwhile: not deleting it", namespace, name)
        elif response.status_code == 404:
            log.info("deployment %s/%s was deleted meanwhile", namespace, name)
        else:
            log.info("deployment %s/%s (%s %s) deleted", namespace, name, workflow_name, version_id)

    async def list_versions(self, workflow_name: str) -> list[str]:
        check_names(workflow_name)
        deployments = await self._list(f"{workers.label_selector(workflow_name)},{workers.LABEL_VERSION}")
        labels = [_labels(d) for d in deployments if not _deleting(d)]
        return sorted({lab[workers.LABEL_VERSION] for lab in labels if workers.labels_match(lab, workflow_name)})

    async def allowed(self, verb: str) -> bool:
        """Whether RBAC lets diachronic ``verb`` Deployments where it works: a SelfSubjectAccessReview, which any
        authenticated user may create (``diachronic doctor``)."""
        attributes = {"group": "apps", "resource": "deployments", "verb": verb}
        if self.namespace is not None:
            attributes["namespace"] = self.namespace
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        response = await self._send(_Call(f"review {verb} on", self.namespace), "POST", path, body=body)
        status = response.json().get("status") or {}
        return bool(status.get("allowed"))

    async def close(self) -> None:
        """Close the HTTP client; the Deployments stay, of course."""
        await self._http.aclose()

    # -- requests --------------------------------------------------------------------------------------------

    async def _list(self, selector: str) -> list[Deployment]:
        """Every page of the Deployments the selector picks, in the configured namespace or in all of them."""
        prefix = API if self.namespace is None else f"{API}/namespaces/{self.namespace}"
        call = _Call("list", self.namespace)
        params = {"labelSelector": selector, "limit": str(PAGE_SIZE)}
        items: list[Deployment] = []
        while True:
            response = await self._send(call, "GET", f"{prefix}/deployments", params=params)
            page = self._decode(response, DeploymentList, "the list of deployments")
            items.extend(page.items)
            token = page.metadata.continue_ if page.metadata else None
            if not token:
                return items
            params = {**params, "continue": token}

    async def _send(
        self,
        call: _Call,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        accept: Collection[int] = (),
    ) -> httpx2.Response:
        """One request; the one place where HTTP and client errors become ``WorkersError`` (``accept``: statuses
        the caller handles itself). Nothing is retried here: connection errors, 5xx and 429 are retryable
        errors (with the server's ``Retry-After``) for Temporal's activity retry policy to retry."""
        try:
            response = await self._http.request(method, path, params=params, json=body)
        except HTTPX2_ERRORS as e:
            problem = f"cannot reach the Kubernetes API at {self.server} to {call.verb} {RESOURCE}: {_describe(e)}"
            if errors.untrusted_certificate(e):
                problem += ": check the cluster's certificate authority in the kubeconfig"
            raise WorkersError(self._redact(problem), retryable=errors.http_client_error_retryable(e)) from e
        except LightkubeConfigError as e:  # raised by authentication, e.g. a failing exec plugin
            raise WorkersError(
                self._redact(f"cannot authenticate to the Kubernetes API at {self.server}: {e}"), retryable=False
            ) from e
        status = response.status_code
        if status < 400 or status in accept:
            return response
        if not errors.http_status_retryable(status):
            raise self._rejected(call, response)
        raise WorkersError(
            self._redact(
                f"the Kubernetes API at {self.server} answered {status} {response.reason_phrase} to "
                f"{call.verb} {RESOURCE} {call.scope}{self._server_says(response)}"
            ),
            retryable=True,
            retry_after_s=errors.retry_after_s(response.headers.get("Retry-After")),
        )

    def _rejected(self, call: _Call, response: httpx2.Response) -> WorkersError:
        """A 4xx that no retry can fix: say what to change (credentials, RBAC) rather than only what failed."""
        status = response.status_code
        says = self._server_says(response)
        what = f"{call.verb} {RESOURCE} {call.scope}"
        if status == 401:
            message = (
                f"the Kubernetes API at {self.server} rejected diachronic's credentials (401 Unauthorized) to "
                f"{what}: the kubeconfig user's token or certificate, or the pod's service account token, is "
                f"missing, expired or invalid{says}"
            )
        elif status == 403:
            message = (
                f"Kubernetes forbids diachronic to {what} (403 Forbidden): missing RBAC permission - verb "
                f"{call.verb!r} on resource 'deployments' in API group 'apps' {call.scope}; grant it with "
                f"{call.grant} (`diachronic k8s manifests` prints one with get, list, watch and delete){says}"
            )
        elif status == 404:
            message = f"the Kubernetes API at {self.server} does not serve {RESOURCE} (apps/v1) {call.scope}{says}"
        else:
            message = f"the Kubernetes API at {self.server} refused to {what}: {status} {response.reason_phrase}{says}"
        return WorkersError(self._redact(message), retryable=False)

    def _decode(self, response: httpx2.Response, model: type[Any], what: str) -> Any:
        try:
            return msgspec.json.decode(response.content, type=model)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise WorkersError(
                self._redact(f"unexpected answer from the Kubernetes API at {self.server} for {what}: {e}"),
                retryable=True,
            ) from e

    def _server_says(self, response: httpx2.Response) -> str:
        """The message of a Kubernetes ``Status`` body, shortened; nothing for other bodies (HTML from a proxy)."""
        try:
            status = response.json()
        except ValueError:
            return ""
        message = status.get("message") if isinstance(status, dict) and status.get("kind") == "Status" else None
        if not isinstance(message, str) or not message:
            return ""
        short = message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "..."
        return f" (server: {short})"

    def _redact(self, text: str) -> str:
        """Belt and braces: credentials never reach a message, whatever a server or library echoed."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", text)


# -- decoding ----------------------------------------------------------------------------------------------------


def _labels(deployment: Deployment) -> dict[str, str]:
    labels = deployment.metadata.labels if deployment.metadata else None
    return {str(k): str(v) for k, v in (labels or {}).items()}


def _named(deployment: Deployment) -> bool:
    return bool(deployment.metadata and deployment.metadata.name and deployment.metadata.namespace)


def _deleting(deployment: Deployment) -> bool:
    return bool(deployment.metadata and deployment.metadata.deletionTimestamp)


def _task_queue(deployment: Deployment) -> str | None:
    """What the workers poll, as their pod template says (``DIACHRONIC_TASK_QUEUE``); None if it does not say."""
    template = deployment.spec.template
    for container in template.spec.containers if template.spec else []:
        for env in container.env or []:
            if env.name == workers.TASK_QUEUE_ENV and env.value:
                return env.value
    return None


def _worker(deployment: Deployment) -> WorkerSet:
    meta = deployment.metadata
    status = deployment.status
    return WorkerSet(
        name=(meta.name if meta else None) or "",
        namespace=(meta.namespace if meta else None) or "",
        uid=meta.uid if meta else None,
        labels=_labels(deployment),
        task_queue=_task_queue(deployment),
        running=bool(status and (status.readyReplicas or 0) > 0),
        replicas=deployment.spec.replicas,
        started_at=meta.creationTimestamp if meta else None,
    )


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _without_userinfo(url: str) -> str:
    """The server URL for messages, without any ``user:password@``."""
    return re.sub(r"//[^/@]*@", "//", url)
