"""Helpers for the HTTP tests: the app served by uvicorn on loopback, GitHub payloads and their signatures."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from diachronic.flags import FlagStore
from diachronic.http import create_app, running
from diachronic.settings import Settings
from diachronic.webhook import sign

# Recognisable values: tests assert they never show up in a response or a log line.
SECRET = "whsec-SENTINEL-7f3a9c"
TOKEN = "tok-SENTINEL-51d2e8"


def settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "github_webhook_secret": SECRET, "signaler_token": TOKEN}
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def served(
    config: Settings, client: Client, flags: FlagStore, *, dev: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a free loopback port, and an HTTP client pointed at it."""
    app = create_app(config, client, flags, dev=dev)
    async with (
        running(app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30.0) as http,
    ):
        yield http


def deployment_status(
    *,
    state: str = "success",
    sha: str = "0123456789abcdef0123456789abcdef01234567",
    environment: str = "production",
    repository: str = "acme/orders",
    payload: Any = None,
    created_at: str = "2024-05-01T12:00:00Z",
) -> dict[str, Any]:
    """A ``deployment_status`` event shaped as GitHub sends it (with some of its many extra fields)."""
    return {
        "action": "created",
        "deployment_status": {
            "url": "https://api.github.com/repos/acme/orders/deployments/1/statuses/2",
            "id": 2,
            "state": state,
            "creator": {"login": "octocat", "id": 1},
            "description": "",
            "environment": environment,
            "target_url": "",
            "created_at": created_at,
            "updated_at": created_at,
        },
        "deployment": {
            "url": "https://api.github.com/repos/acme/orders/deployments/1",
            "id": 1,
            "sha": sha,
            "ref": "main",
            "task": "deploy",
            "payload": {} if payload is None else payload,
            "original_environment": environment,
            "environment": environment,
            "description": None,
            "creator": {"login": "octocat", "id": 1},
            "created_at": created_at,
            "updated_at": created_at,
        },
        "repository": {"id": 42, "name": repository.split("/")[1], "full_name": repository, "private": True},
        "sender": {"login": "octocat", "id": 1},
    }


def signed(
    body: dict[str, Any] | bytes, *, event: str = "deployment_status", delivery: str | None = None, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, raw),
        "User-Agent": "GitHub-Hookshot/test",
    }
    return raw, headers


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
