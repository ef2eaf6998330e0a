"""``diachronic doctor``: check every configured connection and say, for each check, ok or what to fix.

A check is one async function ``(settings) -> list[Finding]`` registered with ``@check``; adding one (GitHub,
say) is writing that function. Each finding is one line: what was checked, and either what was found or what is
wrong and how to fix it. A check never raises for an expected problem (it reports it), and never prints a secret:
the messages are our typed errors', which leave tokens and keys out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import RPCError, RPCStatusCode

from diachronic.backends import open_flag_store, open_workers
from diachronic.contracts import Contract
from diachronic.errors import DiachronicError
from diachronic.settings import Settings
from diachronic.temporal import connect, has_poller, resolve_connection

__all__ = ["CHECKS", "Finding", "check", "run_checks"]


class Finding(Contract):
    """One line of the report."""

    check: str
    ok: bool
    detail: str


Check = Callable[[Settings], Awaitable[list[Finding]]]
CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    """Register a check; they run in the order they are defined."""
    CHECKS.append(fn)
    return fn


def _ok(name: str, detail: str) -> Finding:
    return Finding(check=name, ok=True, detail=detail)


def _failed(name: str, detail: str) -> Finding:
    return Finding(check=name, ok=False, detail=detail)


@check
async def temporal(settings: Settings) -> list[Finding]:
    """Reachable with the configured credentials; the namespace exists; a CI worker polls the CI task queue."""
    try:
        connection = resolve_connection(settings)
        client = await connect(connection)
    except DiachronicError as error:
        return [_failed("temporal", error.message)]
    found = [_ok("temporal", f"connected to {connection.describe()}")]
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=connection.namespace))
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            return [*found, _failed("temporal namespace", f"cannot describe {connection.namespace!r}: {error.message}")]
        return [
            *found,
            _failed(
                "temporal namespace",
                f"namespace {connection.namespace!r} does not exist: create it "
                f"(temporal operator namespace create {connection.namespace}) or set DIACHRONIC_TEMPORAL_NAMESPACE",
            ),
        ]
    found.append(_ok("temporal namespace", f"{connection.namespace!r} exists"))
    if await has_poller(client, settings.ci_task_queue):
        found.append(_ok("ci worker", f"a CI worker polls task queue {settings.ci_task_queue!r}"))
    else:
        found.append(
            _failed(
                "ci worker",
                f"no CI worker polls task queue {settings.ci_task_queue!r}: start `diachronic worker` with the same "
                "settings (in Kubernetes: the diachronic-ci-worker Deployment); deployments wait until one does",
            )
        )
    return found


@check
async def flag_store(settings: Settings) -> list[Finding]:
    """The embedded store opens; Unleash accepts both tokens and has the project and the environment."""
    try:
        store = open_flag_store(settings)
    except DiachronicError as error:
        return [_failed("flag store", error.message)]
    try:
        from diachronic.flags.unleash import UnleashFlagStore

        if isinstance(store, UnleashFlagStore):
            await store.check_access()
            detail = (
                f"Unleash at {store.url}: both tokens accepted, project {store.project!r} and environment "
                f"{store.environment!r} exist"
            )
        else:
            await store.list_version_flags("diachronic")
            detail = f"embedded store {settings.flags_db}"
    except DiachronicError as error:
        return [_failed("flag store", error.message)]
    finally:
        await store.close()
    return [_ok("flag store", detail)]


@check
async def workers(settings: Settings) -> list[Finding]:
    """Local processes need nothing; Kubernetes must answer, and RBAC must allow list and delete on Deployments."""
    try:
        backend = open_workers(settings)
    except DiachronicError as error:
        return [_failed("workers", error.message)]
    try:
        from diachronic.workers.kubernetes import KubernetesWorkers

        if not isinstance(backend, KubernetesWorkers):
            return [_ok("workers", f"local worker processes under {settings.workers_dir}")]
        where = "in every namespace" if backend.namespace is None else f"in namespace {backend.namespace!r}"
        denied = [verb for verb in ("list", "delete") if not await backend.allowed(verb)]
    except DiachronicError as error:
        return [_failed("workers", error.message)]
    finally:
        await backend.close()
    if denied:
        return [
            _failed(
                "workers",
                f"Kubernetes at {backend.server} denies {' and '.join(denied)} on deployments.apps {where}: grant "
                "them to diachronic's service account (the Role printed by `diachronic k8s manifests`)",
            )
        ]
    return [_ok("workers", f"Kubernetes at {backend.server}: list and delete on deployments.apps allowed {where}")]


async def run_checks(settings: Settings, checks: list[Check] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    for fn in CHECKS if checks is None else checks:
        findings.extend(await fn(settings))
    return findings


@check
async def github(settings: Settings) -> list[Finding]:
    """GitHub deployment statuses: optional; when credentials are set, GitHub must accept them."""
    from diachronic.github import GitHubDeployments  # loads only for this check

    try:
        client = GitHubDeployments.from_settings(settings)
    except DiachronicError as error:
        return [_failed("github", error.message)]
    if client is None:
        return [
            _ok(
                "github",
                "not configured: deployments from GitHub get no deployment statuses "
                "(set DIACHRONIC_GITHUB_TOKEN or a GitHub App to report them)",
            )
        ]
    try:
        return [_ok("github", await client.check())]
    except DiachronicError as error:
        return [_failed("github", error.message)]
    finally:
        await client.close()
