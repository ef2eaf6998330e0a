"""The worker backend fails while an old version is being retired: the CI worker (its own process,
``DIACHRONIC_WORKERS=kubernetes``) talks over HTTP to an emulated Kubernetes API (kmock) that

- answers 503 to every Deployments request for 20 s: each request is a retryable error (the adapter never
  retries: Temporal does) until it works, and then only the old version's Deployments are deleted;
- answers 403 (missing RBAC permission): not retried, the deployment ends with a typed, non-retryable reason in
  ``status``, nothing is deleted; once the permission is granted, redeploying the version finishes the job.

The Deployments of the live version, of another workflow, and one missing a label are never deleted."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import kmock
import pytest
from tests.conditions import eventually
from tests.kmock_fixtures import DEPLOYMENTS, Cluster, running_cluster, write_kubeconfig
from tests.reliability.harness import (
    COUNT,
    RESTARTING,
    SECRETS,
    Report,
    Scenario,
    fault_test,
    measurement,
    options,
    scenario,
)

from diachronic.ci.contracts import Phase
from diachronic.k8s.manifests import worker_deployment
from diachronic.workers import LABEL_VERSION, LABEL_WORKFLOW

BUDGET_S = 300.0 + COUNT
pytestmark = [
    *fault_test(BUDGET_S),
    pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning"),  # inside kmock
]
STEPS = "25@0.5s,50@0.5s,100@0.5s"
OUTAGE_S = 20.0


@dataclass
class Seen:
    t: float
    action: str
    where: str
    failed: bool


@dataclass
class Window:
    """From the first Deployments request on, every Deployments request fails with ``status`` for ``seconds``
    (``None``: until ``lift``). Checked before kmock changes anything, as on a real API server."""

    status: int
    seconds: float | None
    reason: str
    message: str
    started: float | None = None
    lifted: float | None = None
    seen: list[Seen] = field(default_factory=list)

    def matches(self, request: kmock.Request) -> bool:
        if request.resource != DEPLOYMENTS:
            return False
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if self.lifted is None and self.seconds is not None and now - self.started >= self.seconds:
            self.lifted = self.started + self.seconds
        failing = self.lifted is None
        where = f"{request.namespace or '*'}/{request.name or ''}"
        self.seen.append(Seen(now, str(request.action.name if request.action else "?").lower(), where, failing))
        return failing

    def raise_it(self) -> None:
        raise kmock.KubernetesError(status=self.status, reason=self.reason, message=self.message, details={})

    def lift(self) -> None:
        self.lifted = time.monotonic()

    def failures(self) -> int:
        return sum(1 for s in self.seen if s.failed)

    def first_ok(self, action: str) -> float | None:
        return next((s.t for s in self.seen if not s.failed and s.action == action), None)


async def populate(cluster: Cluster) -> dict[str, tuple[str, str]]:
    """The old and new versions' worker Deployments, and decoys that must survive."""
    manifests = {
        "v1": worker_deployment("subscription", "v1", image="sub:1", namespace="workers"),
        "v1-other-namespace": worker_deployment("subscription", "v1", image="sub:1", namespace="team-b"),
        "v2": worker_deployment("subscription", "v2", image="sub:2", namespace="workers"),
        "v2-other-namespace": worker_deployment("subscription", "v2", image="sub:2", namespace="team-b"),
        "billing-v1": worker_deployment("billing", "v1", image="billing:1", namespace="workers"),
        "unlabelled-v1": worker_deployment("subscription", "v1", image="sub:1", namespace="team-c"),
    }
    created = {}
    for key, manifest in manifests.items():
        obj = await cluster.apply(manifest)
        created[key] = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    namespace, name = created["unlabelled-v1"]  # a human removed the version label: never diachronic's to delete
    cluster.api.objects[(DEPLOYMENTS, namespace, name)].patch(
        {"metadata": {"labels": {LABEL_WORKFLOW: "subscription", LABEL_VERSION: None}}}
    )
    return created


def deleted_ones(cluster: Cluster, created: dict[str, tuple[str, str]]) -> set[str]:
    live = cluster.live_names()
    return {key for key, where in created.items() if where not in live}


@contextlib.asynccontextmanager
async def deploying_v2_under(
    name: str, tmp_path: Path, window: Window
) -> AsyncIterator[tuple[Cluster, dict[str, tuple[str, str]], Scenario]]:
    """v1 live with running subscriptions, the CI worker on the Kubernetes backend of an emulated cluster whose
    Deployments requests fail as ``window`` says, and v2 being deployed."""
    async with running_cluster(tmp_path) as cluster:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig-ci", cluster.url, token=SECRETS.kube_token)
        created = await populate(cluster)
        env = {"DIACHRONIC_WORKERS": "kubernetes", "DIACHRONIC_KUBECONFIG": str(kubeconfig)}
        async with scenario(name, tmp_path, budget_s=BUDGET_S, env=env) as sc:
            await sc.go_live("v1", {"v1": "v1", "v2": "v2"})  # the pods: local processes (no Kubernetes runs here)
            cluster.api.fail(window)  # type: ignore[arg-type]  (duck-typed like kmock_fixtures._Failure)
            await sc.deploy("v2", options(STEPS, batch=max(COUNT // 5, 5)))
            yield cluster, created, sc


async def test_kubernetes_api_503_for_20_s_while_retiring(tmp_path: Path, reliability_report: Report) -> None:
    window = Window(503, OUTAGE_S, "ServiceUnavailable", "the API server is overloaded (injected)")
    async with deploying_v2_under("kubernetes_503", tmp_path, window) as (cluster, created, sc):

        async def retiring() -> bool:
            return window.started is not None

        await eventually(retiring, timeout=180, what="the retirement to begin", not_yet=RESTARTING)
        assert window.started is not None
        fault_start = window.started - sc.t0
        sc.marks["fault_start"] = fault_start
        result = await sc.ci_result(240)
        verdict = await sc.verdict(result, "v2")
        assert window.lifted is not None
        fault_end = window.lifted - sc.t0
        sc.marks["fault_end"] = fault_end
        deleted_at = window.first_ok("delete")
        deleted = deleted_ones(cluster, created)
        deletes = [s.where for s in window.seen if s.action == "delete" and not s.failed]
        shown = [
            s.status.last_error
            for s in sc.timeline.between(fault_start, fault_end)
            if s.status is not None and s.status.last_error
        ]
        wrong = deleted - {"v1", "v1-other-namespace"}
        verdict.live_stopped += sorted(wrong)  # here the workers are Deployments: deleting a live one is the harm
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault=f"Kubernetes API answers 503 for {OUTAGE_S:.0f} s while the old version is retired",
                what_happened=(
                    f"{window.failures()} requests failed with 503 (each a retryable error, retried by "
                    f"Temporal); "
                    + (f"status showed {shown[0][:140]!r}; " if shown else "status showed no reason; ")
                    + f"afterwards deleted {sorted(deleted)} and nothing else"
                ),
                fault_s=fault_end - fault_start,
                recover_s=None if deleted_at is None else deleted_at - window.lifted,
                recovered_when="the old version's Deployments are deleted",
                complete_s=sc.marks["completed"] - fault_end,
                requests_failed=window.failures(),
                deleted=sorted(deleted),
                delete_requests=deletes,
            )
        )
        assert verdict.record["phase"] == "completed", verdict.record
        assert window.failures() >= 2, "the fault never hit the retirement"
        assert deleted == {"v1", "v1-other-namespace"}, deleted
        verdict.assert_nothing_lost()
        assert sorted(deletes) == sorted(f"{created[k][0]}/{created[k][1]}" for k in ("v1", "v1-other-namespace"))
        assert await sc.flag_states() == [("v2", False), ("v1", True)]


async def test_kubernetes_api_403_is_a_typed_reason_then_a_redeploy_finishes(
    tmp_path: Path, reliability_report: Report
) -> None:
    window = Window(403, None, "Forbidden", 'deployments.apps is forbidden: User "ci" cannot list (injected)')
    async with deploying_v2_under("kubernetes_403", tmp_path, window) as (cluster, created, sc):
        failure = await sc.ci_failure(240)
        assert window.started is not None
        fault_start = window.started - sc.t0
        sc.marks["fault_start"] = fault_start
        failed = await sc.until(lambda s: s.phase is Phase.FAILED, timeout=30, what="status to show the failure")
        requests_while_forbidden = len(window.seen)
        deleted_while_forbidden = deleted_ones(cluster, created)
        flags_while = await sc.flags.list_version_flags("subscription", include_archived=True)

        window.lift()  # an operator grants the permission ...
        fault_end = sc.mark("fault_end")
        redeploy = options(STEPS).model_copy(update={"redeploy": True})
        await sc.deploy("v2", redeploy)  # ... and redeploys the version (the newest live one: an explicit redeploy)
        result = await sc.ci_result(240)
        verdict = await sc.verdict(result, "v2")
        deleted_at = window.first_ok("delete")
        deleted = deleted_ones(cluster, created)
        reason = failed.last_error or ""
        wrong = (deleted - {"v1", "v1-other-namespace"}) | deleted_while_forbidden
        verdict.live_stopped += sorted(wrong)  # here the workers are Deployments: deleting a live one is the harm
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault="Kubernetes API answers 403 (missing RBAC permission) while the old version is retired",
                what_happened=(
                    f"not retried ({requests_while_forbidden} request); the deployment failed with "
                    f"{reason[:150]!r} in status; nothing deleted, the old flag kept; after the permission was "
                    f"granted, a redeploy of v2 rolled out from 100 % at once and deleted {sorted(deleted)}"
                ),
                fault_s=fault_end - fault_start,
                recover_s=None if deleted_at is None else deleted_at - sc.t0 - fault_end,
                recovered_when="after the redeploy, the old version's Deployments are deleted",
                complete_s=sc.marks["completed"] - fault_end,
                outcome=f"failed with a typed reason, then {verdict.record['phase']} after a redeploy",
                deleted=sorted(deleted),
            )
        )
        assert "WorkersError" in str(failure.cause), failure.cause
        assert reason.startswith("WorkersError: Kubernetes forbids diachronic to list"), reason
        assert requests_while_forbidden == 1, "a 403 must not be retried"
        assert deleted_while_forbidden == set()
        assert [(f.info.version_id, f.archived) for f in flags_while] == [("v2", False), ("v1", False)]
        assert verdict.record["phase"] == "completed", verdict.record
        assert deleted == {"v1", "v1-other-namespace"}, deleted
        verdict.assert_nothing_lost()
        assert await sc.flag_states() == [("v2", False), ("v1", True)]
