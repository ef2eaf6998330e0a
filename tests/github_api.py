"""GitHub's REST API for tests: a validating proxy built from GitHub's own OpenAPI description, in front of a
recorder that answers like GitHub.

``prism proxy`` (npm ``@stoplight/prism-cli``, pinned in package.json, installed by ``make install``) loads
``@octokit/openapi``'s ``api.github.com.json`` and checks every request against it: a request GitHub would refuse
(wrong path, body, enum value) gets 422 from prism and never reaches the recorder. Valid ones are forwarded, so a
test sees both that its request is valid for GitHub and exactly what it contained. Prism takes seconds to load
the description: ``start_early`` starts it in the background as soon as pytest knows a selected test needs it
(conftest's collection hook), and the ``github_api`` fixture waits for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / "node_modules" / ".bin" / "prism"
SPEC = ROOT / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
READY_TIMEOUT_S = 300.0  # ~10 s on a quiet machine; the description is 13 MB

EXPIRES_AT = "2099-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


Answer = tuple[int, dict[str, str], Any]
"""status, headers, JSON body"""


def _user() -> dict[str, Any]:
    return {
        "login": "diachronic[bot]",
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.example/u/1",
        "gravatar_id": "",
        "url": "https://api.github.com/users/diachronic",
        "html_url": "https://github.com/diachronic",
        "followers_url": "https://api.github.com/users/diachronic/followers",
        "following_url": "https://api.github.com/users/diachronic/following{/other_user}",
        "gists_url": "https://api.github.com/users/diachronic/gists{/gist_id}",
        "starred_url": "https://api.github.com/users/diachronic/starred{/owner}{/repo}",
        "subscriptions_url": "https://api.github.com/users/diachronic/subscriptions",
        "organizations_url": "https://api.github.com/users/diachronic/orgs",
        "repos_url": "https://api.github.com/users/diachronic/repos",
        "events_url": "https://api.github.com/users/diachronic/events{/privacy}",
        "received_events_url": "https://api.github.com/users/diachronic/received_events",
        "type": "Bot",
        "site_admin": False,
    }


def _app() -> dict[str, Any]:
    return {
        "id": 1,
        "slug": "diachronic-test",
        "node_id": "MDExOkludGVncmF0aW9uMQ==",
        "owner": _user(),
        "name": "diachronic test",
        "description": "reports deployment statuses",
        "external_url": "https://ci.example.com",
        "html_url": "https://github.com/apps/diachronic-test",
        "created_at": "2024-05-01T12:00:00Z",
        "updated_at": "2024-05-01T12:00:00Z",
        "permissions": {"deployments": "write"},
        "events": [],
    }


def deployment_status_answer(path: str, body: dict[str, Any], status_id: int) -> dict[str, Any]:
    """What GitHub answers a created deployment status (its schema's required fields)."""
    repo_url = "https://api.github.com/repos/" + "/".join(path.strip("/").split("/")[1:3])
    deployment_url = f"{repo_url}/deployments/{path.strip('/').split('/')[4]}"
    return {
        "url": f"{deployment_url}/statuses/{status_id}",
        "id": status_id,
        "node_id": "MDE2OkRlcGxveW1lbnRTdGF0dXMx",
        "state": body["state"],
        "creator": _user(),
        "description": body.get("description", ""),
        "environment": "production",
        "target_url": body.get("log_url") or "https://ci.example.com/log",
        "created_at": "2024-05-01T12:00:00Z",
        "updated_at": "2024-05-01T12:00:00Z",
        "deployment_url": deployment_url,
        "repository_url": repo_url,
        "environment_url": body.get("environment_url") or "https://orders.example.com",
        "log_url": body.get("log_url") or "https://ci.example.com/log",
    }


@dataclass
class Recorder:
    """Answers like GitHub; records every request it gets. ``script`` answers chosen requests differently."""

    requests: list[Recorded] = field(default_factory=list)
    script: list[tuple[Callable[[Recorded], bool], Answer]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    installation_id: int = 4242
    token_count: int = 0

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.script.clear()
            self.token_count = 0

    def answer_next(self, when: Callable[[Recorded], bool], answer: Answer) -> None:
        """Answer the next request for which ``when`` holds with ``answer`` (once)."""
        with self.lock:
            self.script.append((when, answer))

    def handle(self, request: Recorded) -> Answer:
        with self.lock:
            self.requests.append(request)
            for index, (when, answer) in enumerate(self.script):
                if when(request):
                    del self.script[index]
                    return answer
            if request.path.endswith("/statuses") and request.method == "POST":
                return 201, {}, deployment_status_answer(request.path, request.body, len(self.requests))
            if request.path.endswith("/access_tokens"):
                self.token_count += 1
                return (
                    201,
                    {},
                    {"token": f"ghs_installation{self.token_count}", "expires_at": EXPIRES_AT, "permissions": {}},
                )
            if request.path.endswith("/installation"):
                return 200, {}, {"id": self.installation_id, "app_id": 1, "target_type": "Organization"}
            if request.path == "/rate_limit":
                limit = {"limit": 5000, "remaining": 4999, "reset": 1700000000, "used": 1}
                return 200, {}, {"rate": limit, "resources": {"core": limit, "search": limit}}
            if request.path == "/app":
                return 200, {}, _app()
        return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def statuses(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/statuses")]


def _serve(recorder: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, headers, answer = recorder.handle(
                Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GitHubApi:
    """The validating proxy (``url``) in front of ``recorder``; ``direct_url`` reaches the recorder itself."""

    recorder: Recorder
    url: str
    direct_url: str
    process: subprocess.Popen[bytes]
    log: Path
    server: ThreadingHTTPServer

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prism exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                httpx.get(self.url + "/meta", timeout=2)  # any answer: prism listens
                return
            time.sleep(0.2)
        raise RuntimeError(f"prism did not listen within {READY_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.server.shutdown()
        self.server.server_close()


def start_early(log_dir: Path) -> GitHubApi:
    """Start the recorder and prism now; ``wait_ready`` later. Fails (never skips) when prism is not installed."""
    if not PRISM.exists() or not SPEC.exists():
        raise RuntimeError(f"prism or GitHub's OpenAPI description is missing ({PRISM}, {SPEC}): run `make install`")
    recorder = Recorder()
    server = _serve(recorder)
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    port = free_port()
    log = log_dir / "prism.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(PRISM), "proxy", str(SPEC), upstream, "--errors", "-h", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1"},
        )
    return GitHubApi(recorder, f"http://127.0.0.1:{port}", upstream, process, log, server)
