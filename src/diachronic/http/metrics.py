"""``GET /metrics``: the process's counters (``diachronic.metrics``) and gauges of every workflow's deployment,
read from the CI's status at scrape time through the dashboard's shared reads (a scrape never queries a
workflow more than the open dashboards already do). Prometheus text format; see docs/pipeline.md."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from diachronic.ci.contracts import Phase
from diachronic.errors import DiachronicError
from diachronic.http.dashboard.models import Unavailable, WorkflowView
from diachronic.http.dashboard.routes import ReadAll
from diachronic.metrics import REGISTRY

__all__ = ["install_metrics", "status_families"]


def status_families(workflows: list[WorkflowView], unavailable: list[Unavailable]) -> list[Metric]:
    """The gauges of one scrape, from the workflows' views (pure)."""
    by_phase = GaugeMetricFamily(
        "diachronic_deployments", "Workflows whose latest deployment is in each phase.", labels=["phase"]
    )
    phase = GaugeMetricFamily(
        "diachronic_deployment_phase",
        "1 for the phase the latest deployment of the workflow is in, 0 for the others.",
        labels=["workflow", "phase"],
    )
    percent = GaugeMetricFamily(
        "diachronic_version_percent",
        'The "All other traffic" percentage of each live version flag (archived flags are left out).',
        labels=["workflow", "version"],
    )
    share = GaugeMetricFamily(
        "diachronic_version_share_percent",
        "The share of new starts routed to each live version, in percent.",
        labels=["workflow", "version"],
    )
    rollout = GaugeMetricFamily(
        "diachronic_rollout_percent",
        "Share of new starts the current rollout routes to the new version.",
        labels=["workflow"],
    )
    paused = GaugeMetricFamily("diachronic_rollout_paused", "1 while a human holds the rollout.", labels=["workflow"])
    queued = GaugeMetricFamily(
        "diachronic_queued_deployments", "Deployments waiting in the queue.", labels=["workflow"]
    )
    signalled = GaugeMetricFamily(
        "diachronic_migration_signalled",
        "Old workflows sent the migrate signal by this deployment.",
        labels=["workflow"],
    )
    remaining = GaugeMetricFamily(
        "diachronic_migration_remaining",
        "Workflows still running on the previous version's task queue.",
        labels=["workflow"],
    )
    readable = GaugeMetricFamily(
        "diachronic_status_readable",
        "1 when the workflow's CI answered its status query, 0 when not.",
        labels=["workflow"],
    )
    counts = dict.fromkeys(Phase, 0)
    for view in workflows:
        name = view.workflow_name
        counts[view.phase] += 1
        for each in Phase:
            phase.add_metric([name, each.value], 1.0 if each is view.phase else 0.0)
        for version in view.versions:
            if version.archived:
                continue
            if version.general_percent is not None:
                percent.add_metric([name, version.version_id], version.general_percent)
            share.add_metric([name, version.version_id], version.share_percent)
        if view.rollout_percent is not None:
            rollout.add_metric([name], view.rollout_percent)
        paused.add_metric([name], 1.0 if view.paused else 0.0)
        queued.add_metric([name], len(view.queued))
        if view.migration is not None:
            signalled.add_metric([name], view.migration.signalled)
            if view.migration.on_old_queue is not None:
                remaining.add_metric([name], view.migration.on_old_queue)
        readable.add_metric([name], 1.0)
    for missing in unavailable:
        readable.add_metric([missing.workflow_name], 0.0)
    for each, count in counts.items():
        by_phase.add_metric([each.value], count)
    return [by_phase, phase, percent, share, rollout, paused, queued, signalled, remaining, readable]


class _Scrape(Collector):
    """The process's registry plus this scrape's gauges."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._families


def install_metrics(app: FastAPI, read_all: ReadAll) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus text format. When the workflows cannot be listed, the counters are still served."""
        try:
            families = status_families(*await read_all())
        except DiachronicError:
            families = []
        return Response(generate_latest(_Scrape(families)), media_type=CONTENT_TYPE_LATEST)
