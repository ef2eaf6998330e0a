"""The process's Prometheus metrics: counters updated where things happen, in the CI worker and the HTTP app.

The HTTP app serves them at ``/metrics`` together with gauges read from the CI's status at scrape time
(``diachronic.http.metrics``); ``diachronic worker`` serves them on ``DIACHRONIC_METRICS_PORT``. ``diachronic
dev`` runs both in one process, so its ``/metrics`` has everything. Labels take few values (activity and error
names, sink kinds, results): nothing grows with the number of workflows. See docs/pipeline.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

__all__ = [
    "ACTIVITY_FAILURES",
    "GATE_RESULTS",
    "NOTIFICATIONS",
    "REGISTRY",
    "WEBHOOK_DELIVERIES",
    "MetricsInterceptor",
    "serving",
]

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

ACTIVITY_FAILURES = Counter(
    "diachronic_activity_failures",
    "Failed activity attempts of the CI (Temporal retries the retryable ones), by activity and typed error.",
    ["activity", "error"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "diachronic_webhook_deliveries",
    "GitHub webhook deliveries by event and result: started, ignored, pong, or the error's name.",
    ["event", "result"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "diachronic_notification_deliveries",
    "Deliveries of notifications by target kind (webhook, slack, apprise, github) and result "
    "(delivered, retrying, refused).",
    ["target", "result"],
    registry=REGISTRY,
)
GATE_RESULTS = Counter(
    "diachronic_gate_results",
    "Gate verdicts by workflow, gate and result (passed, failed, timed_out); counted where gates decide.",
    ["workflow", "gate", "result"],
    registry=REGISTRY,
)


class _CountFailures(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError as error:
            ACTIVITY_FAILURES.labels(
                activity=activity.info().activity_type, error=error.type or "ApplicationError"
            ).inc()
            raise


class MetricsInterceptor(Interceptor):
    """Counts every failed activity attempt of the worker it is given to (``Worker(interceptors=[...])``)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _CountFailures(next)


@contextlib.contextmanager
def serving(host: str, port: int | None) -> Iterator[int | None]:
    """Serve ``REGISTRY`` at ``http://host:port/metrics`` in a thread while the block runs (port 0: a free one;
    None: not served). Yields the bound port."""
    if port is None:
        yield None
        return
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
