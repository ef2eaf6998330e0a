"""The HTTP service: ``POST /webhooks/github``, ``POST /instruction``, ``GET /healthz``, ``/openapi.json``.

``create_app`` builds the FastAPI app from settings, a Temporal client and a flag store; ``serve_http`` runs it
with uvicorn (``diachronic serve``, ``diachronic dev --http-port``). Routes and statuses: docs/http.md.
"""

from __future__ import annotations

from diachronic.http.app import Health, create_app
from diachronic.http.errors import STATUS, ErrorBody, status_of
from diachronic.http.server import EmbeddedServer, running, serve_http

__all__ = ["STATUS", "EmbeddedServer", "ErrorBody", "Health", "create_app", "running", "serve_http", "status_of"]
