"""The live dashboard: a page at ``/`` that shows every workflow's deployments and steers them, and the JSON API
behind it (``GET /api/workflows``, ``GET /api/workflows/{name}``, ``POST /api/workflows/{name}/controls/{control}``).

Served by the same app as the webhook and the signaler (``diachronic serve``, ``diachronic dev``); every file of
the page ships in the package (``diachronic/http/static``), nothing comes from elsewhere. See docs/dashboard.md.
"""

from __future__ import annotations

from diachronic.http.dashboard.models import (
    ControlRequest,
    ControlResult,
    Routing,
    Unavailable,
    VersionView,
    WorkflowList,
    WorkflowView,
)
from diachronic.http.dashboard.routes import STATIC_DIR, install_dashboard
from diachronic.http.dashboard.shares import Shares, routing_shares

__all__ = [
    "STATIC_DIR",
    "ControlRequest",
    "ControlResult",
    "Routing",
    "Shares",
    "Unavailable",
    "VersionView",
    "WorkflowList",
    "WorkflowView",
    "install_dashboard",
    "routing_shares",
]
