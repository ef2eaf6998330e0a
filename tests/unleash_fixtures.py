"""The real Unleash for tests: find it, control it (fault tests), and edit flags as a human would.

Where the server comes from, in order:
1. ``DIACHRONIC_UNLEASH_URL`` + ``..._ADMIN_TOKEN`` + ``..._CLIENT_TOKEN`` in the environment (any Unleash);
2. the state file ``<data dir>/unleash/state.env`` that ``make unleash`` / ``scripts/unleash/unleash.sh`` write.

If none answers ``/health``: under ``make test`` (``DIACHRONIC_TEST_UNLEASH=required``) or in CI (``CI=true``)
the tests FAIL, since a skipped suite would hide a broken set-up; a developer running pytest alone gets a skip
that says how to start it. Only an instance started by our script can be stopped and restarted (fault tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from diachronic.ci.activities import CIActivities
from diachronic.ci.worker import ci_worker
from diachronic.errors import InvalidInput
from diachronic.flags import GENERAL_TRAFFIC_TITLE, FlagStore, FlagStrategy, VersionFlag
from diachronic.flags.evaluation import default_strategies
from diachronic.flags.unleash import UnleashFlagStore, read_state_file
from diachronic.versions import flag_name_prefix
from diachronic.workers.local import LocalWorkers

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "unleash" / "unleash.sh"


def unleash_required() -> bool:
    """True under ``make test`` and in CI: a missing Unleash is then a failure, not a skip."""
    return os.environ.get("DIACHRONIC_TEST_UNLEASH") == "required" or os.environ.get("CI", "").lower() == "true"


def unleash_dir() -> Path:
    """The instance folder: ``make test``'s private one (``DIACHRONIC_TEST_UNLEASH_DIR``), else ``make unleash``'s."""
    given = os.environ.get("DIACHRONIC_TEST_UNLEASH_DIR")
    if given:
        return Path(given) if Path(given).is_absolute() else ROOT / given
    data = Path(os.environ.get("DIACHRONIC_DATA_DIR", ".diachronic"))
    return (data if data.is_absolute() else ROOT / data) / "unleash"


@dataclass(frozen=True)
class UnleashServer:
    """A running Unleash: where it is, its tokens, and (for ours) how to stop and restart it."""

    url: str
    admin_token: SecretStr
    client_token: SecretStr
    project: str = "default"
    environment: str = "development"
    state_dir: Path | None = None  # set when scripts/unleash/unleash.sh runs it: then it can be controlled

    def __repr__(self) -> str:
        return f"UnleashServer(url={self.url!r}, project={self.project!r}, environment={self.environment!r})"

    def store(self, **kwargs: Any) -> UnleashFlagStore:
        options: dict[str, Any] = {"project": self.project, "environment": self.environment, **kwargs}
        return UnleashFlagStore(self.url, self.admin_token, self.client_token, **options)

    def variables(self) -> dict[str, str]:
        """The ``DIACHRONIC_*`` variables that point a diachronic process at this server (tokens included)."""
        return {
            "DIACHRONIC_FLAGS": "unleash",
            "DIACHRONIC_UNLEASH_URL": self.url,
            "DIACHRONIC_UNLEASH_ADMIN_TOKEN": self.admin_token.get_secret_value(),
            "DIACHRONIC_UNLEASH_CLIENT_TOKEN": self.client_token.get_secret_value(),
            "DIACHRONIC_UNLEASH_PROJECT": self.project,
            "DIACHRONIC_UNLEASH_ENVIRONMENT": self.environment,
        }

    def admin(self, timeout_s: float = 10.0) -> httpx.AsyncClient:
        """A raw Admin API client: the "human" editing flags in Unleash behind diachronic's back."""
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": self.admin_token.get_secret_value()},
            timeout=timeout_s,
            # Unleash (Node) closes a connection idle for 5 s: on a loaded machine a reused one could be closed
            # just as a request goes out ("Server disconnected without sending a response"). Never reuse one that old.
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    # -- control (fault tests) ------------------------------------------------------------------------------

    @property
    def controllable(self) -> bool:
        return self.state_dir is not None

    def node_pid(self) -> int:
        assert self.state_dir is not None, "only an Unleash started by scripts/unleash/unleash.sh can be controlled"
        return int((self.state_dir / "node.pid").read_text().strip())

    def stop_node(self) -> None:
        """Stop the Unleash process (PostgreSQL keeps running): "Unleash is down"."""
        self._script("stop-node")

    def start(self) -> None:
        """Start whatever is not running, on the same ports, and wait until /health is GOOD."""
        self._script("start")
        if self.state_dir is not None:
            now = read_state_file(self.state_dir / "state.env").get("DIACHRONIC_UNLEASH_URL")
            if now != self.url:
                raise RuntimeError(
                    f"Unleash came back on {now}, not {self.url}: its port was taken while it was down "
                    "(another Unleash starting on this machine?)"
                )

    def pause(self) -> None:
        """Freeze the Unleash process: connections are accepted but nothing answers ("Unleash is slow")."""
        os.kill(self.node_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen Unleash go on; nothing to do if it is not running."""
        with contextlib.suppress(ProcessLookupError, FileNotFoundError, ValueError):
            os.kill(self.node_pid(), signal.SIGCONT)

    def healthy(self) -> bool:
        return _healthy(self.url)

    def _script(self, command: str) -> None:
        assert self.state_dir is not None, "only an Unleash started by scripts/unleash/unleash.sh can be controlled"
        env = {**os.environ, "DIACHRONIC_UNLEASH_DIR": str(self.state_dir)}
        result = subprocess.run(
            [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"unleash.sh {command} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def _healthy(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url.rstrip('/')}/health", timeout=2.0).json().get("health") == "GOOD")
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _from_env() -> UnleashServer | None:
    env = os.environ
    url, admin, client = (env.get(f"DIACHRONIC_UNLEASH_{k}") for k in ("URL", "ADMIN_TOKEN", "CLIENT_TOKEN"))
    if not (url and admin and client):
        return None
    return UnleashServer(
        url=url.rstrip("/"),
        admin_token=SecretStr(admin),
        client_token=SecretStr(client),
        project=env.get("DIACHRONIC_UNLEASH_PROJECT", "default"),
        environment=env.get("DIACHRONIC_UNLEASH_ENVIRONMENT", "development"),
    )


def _from_state() -> UnleashServer | None:
    state = unleash_dir() / "state.env"
    if not state.exists():
        return None
    values = read_state_file(state)
    try:
        return UnleashServer(
            url=values["DIACHRONIC_UNLEASH_URL"],
            admin_token=SecretStr(values["DIACHRONIC_UNLEASH_ADMIN_TOKEN"]),
            client_token=SecretStr(values["DIACHRONIC_UNLEASH_CLIENT_TOKEN"]),
            project=values.get("DIACHRONIC_UNLEASH_PROJECT", "default"),
            environment=values.get("DIACHRONIC_UNLEASH_ENVIRONMENT", "development"),
            state_dir=state.parent,
        )
    except KeyError:
        return None


@functools.cache
def _find() -> UnleashServer | str:
    ours = _from_state()
    if os.environ.get("DIACHRONIC_TEST_UNLEASH_DIR"):  # make test's own instance wins over anything exported
        if ours is not None and _healthy(ours.url):
            return ours
        return f"the instance of DIACHRONIC_TEST_UNLEASH_DIR={unleash_dir()} is not running"
    given = _from_env()
    if given is not None and (ours is None or given.url != ours.url):
        return given if _healthy(given.url) else f"DIACHRONIC_UNLEASH_URL={given.url} does not answer /health"
    if ours is not None and _healthy(ours.url):
        return ours
    return f"no running Unleash (looked for {unleash_dir() / 'state.env'})"


@contextlib.asynccontextmanager
async def throwaway_workflow(server: UnleashServer, prefix: str) -> AsyncIterator[str]:
    """A fresh workflow name whose flags are deleted from ``server`` afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        human = HumanAdmin(server)
        await human.delete_workflows([name])
        await human.close()


def connect_unleash() -> UnleashServer:
    """The Unleash to test against; fails (make test, CI) or skips (pytest alone) when there is none."""
    found = _find()
    if isinstance(found, UnleashServer):
        return found
    message = f"{found}: start it with `make unleash` (or run `make test`, which starts and stops it)"
    if unleash_required():
        pytest.fail(f"Unleash is required here but unavailable: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def unleash() -> UnleashServer:
    """The Unleash to test against (``tests/conftest.py`` loads this module as a plugin)."""
    return connect_unleash()


def controllable_unleash() -> UnleashServer:
    server = connect_unleash()
    if not server.controllable:
        message = "fault tests need the Unleash of scripts/unleash/unleash.sh (this one comes from the environment)"
        if unleash_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return server


# -- a human at the Admin API --------------------------------------------------------------------------------


class HumanAdmin:
    """Flag edits made directly through Unleash's Admin API, as a person (or the UI) would make them."""

    def __init__(self, server: UnleashServer) -> None:
        self.server = server
        self.http = server.admin()

    def _feature(self, name: str) -> str:
        return f"/api/admin/projects/{self.server.project}/features/{name}"

    def _strategies(self, name: str) -> str:
        return f"{self._feature(name)}/environments/{self.server.environment}/strategies"

    async def _ok(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: HTTP {response.status_code} {response.text[:300]}"
        return response

    async def create_flag(self, name: str, *, description: str = "seeded by a test") -> None:
        body = {"name": name, "type": "release", "description": description, "impressionData": True}
        await self._ok("POST", f"/api/admin/projects/{self.server.project}/features", json=body)

    async def add_strategy(self, name: str, strategy: FlagStrategy) -> None:
        body = strategy.model_dump(mode="json", by_alias=True, exclude={"id"})
        await self._ok("POST", self._strategies(name), json=body)

    async def add_raw_strategy(self, name: str, body: dict[str, Any]) -> None:
        await self._ok("POST", self._strategies(name), json=body)

    async def strategies(self, name: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (await self._ok("GET", self._strategies(name))).json()
        return data

    async def seed_flag(
        self, name: str, *, general_percent: int = 0, enabled: bool = True, archived: bool = False
    ) -> None:
        await self.create_flag(name)
        for strategy in default_strategies(name, general_percent=general_percent):
            await self.add_strategy(name, strategy)
        if enabled:
            await self.set_flag_enabled(name, True)
        if archived:
            await self._ok("DELETE", self._feature(name))

    async def delete_strategy(self, flag_name: str, title: str) -> None:
        for strategy in await self.strategies(flag_name):
            if strategy.get("title") == title:
                await self._ok("DELETE", f"{self._strategies(flag_name)}/{strategy['id']}")

    async def disable_strategy(self, flag_name: str, title: str) -> None:
        for strategy in await self.strategies(flag_name):
            if strategy.get("title") == title:
                patch = [{"op": "replace", "path": "/disabled", "value": True}]
                await self._ok("PATCH", f"{self._strategies(flag_name)}/{strategy['id']}", json=patch)

    async def edit_percent(self, flag_name: str, percent: int) -> None:
        await self.set_percent(flag_name, GENERAL_TRAFFIC_TITLE, percent)

    async def set_percent(self, flag_name: str, title: str, percent: int) -> None:
        for strategy in await self.strategies(flag_name):
            if strategy.get("title") == title:
                patch = [{"op": "replace", "path": "/parameters/rollout", "value": str(percent)}]
                await self._ok("PATCH", f"{self._strategies(flag_name)}/{strategy['id']}", json=patch)

    async def set_flag_enabled(self, flag_name: str, enabled: bool) -> None:
        switch = "on" if enabled else "off"
        await self._ok("POST", f"{self._feature(flag_name)}/environments/{self.server.environment}/{switch}")

    async def _names(self, workflow_name: str, archived: bool) -> list[str]:
        prefix, names, offset = f"workflow.{workflow_name}.", [], 0
        while True:
            params: dict[str, str | int] = {
                "query": prefix,
                "project": f"IS:{self.server.project}",
                "archived": f"IS:{str(archived).lower()}",
                "limit": 100,
                "offset": offset,
            }
            data = (await self._ok("GET", "/api/admin/search/features", params=params)).json()
            names += [f["name"] for f in data["features"] if f["name"].startswith(prefix)]
            offset += len(data["features"])
            if not data["features"] or offset >= data["total"]:
                return names

    async def delete_workflows(self, workflow_names: Iterable[str]) -> None:
        """Delete every flag of these workflows for good (archive, then delete), so runs do not pile up flags."""
        wfs = sorted(workflow_names)
        live = [n for names in await asyncio.gather(*(self._names(wf, False) for wf in wfs)) for n in names]
        project = f"/api/admin/projects/{self.server.project}"
        for i in range(0, len(live), 500):
            await self._ok("POST", f"{project}/archive", json={"features": live[i : i + 500]})
        archived = [n for names in await asyncio.gather(*(self._names(wf, True) for wf in wfs)) for n in names]
        for i in range(0, len(archived), 500):
            await self._ok("POST", f"{project}/delete", json={"features": archived[i : i + 500]})

    async def feature(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = (await self._ok("GET", self._feature(name))).json()
        return data

    async def close(self) -> None:
        await self.http.aclose()


# -- the contract harness ------------------------------------------------------------------------------------


def workflow_of(name: str) -> str | None:
    """The workflow part of anything shaped like a version flag name, if it is a valid workflow name."""
    parts = name.split(".")
    if len(parts) < 2:
        return None
    try:
        flag_name_prefix(parts[1])
    except InvalidInput:
        return None
    return parts[1]


class RecordingStore:
    """Passes every call to the real store and remembers the workflows touched, for ``settle``."""

    def __init__(self, inner: UnleashFlagStore, touched: set[str]) -> None:
        self.inner = inner
        self.touched = touched

    def _wf(self, workflow_name: str) -> None:
        if workflow_of(f"workflow.{workflow_name}") == workflow_name:
            self.touched.add(workflow_name)

    def _flag(self, flag_name: str) -> None:
        wf = workflow_of(flag_name)
        if wf is not None:
            self.touched.add(wf)

    async def list_version_flags(self, workflow_name: str, *, include_archived: bool = False) -> list[VersionFlag]:
        self._wf(workflow_name)
        return await self.inner.list_version_flags(workflow_name, include_archived=include_archived)

    async def apply_version_flag(self, workflow_name: str, version_id: str) -> Any:
        self._wf(workflow_name)
        return await self.inner.apply_version_flag(workflow_name, version_id)

    async def get_strategies(self, flag_name: str) -> list[FlagStrategy]:
        return await self.inner.get_strategies(flag_name)

    async def set_general_percent(self, flag_name: str, percent: int, *, expected: int | None = None) -> None:
        self._flag(flag_name)
        await self.inner.set_general_percent(flag_name, percent, expected=expected)

    async def archive_flag(self, flag_name: str) -> None:
        self._flag(flag_name)
        await self.inner.archive_flag(flag_name)

    async def route(self, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> Any:
        self._wf(workflow_name)
        return await self.inner.route(workflow_name, workflow_id, is_test=is_test)

    async def close(self) -> None:
        return None  # the real store is shared by the session


class Interleave(httpx.AsyncBaseTransport):
    """The store's HTTP transport, able to run something just before a chosen request leaves: a human's edit landing
    between what the store read and what it writes."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._before: list[tuple[Callable[[httpx.Request], bool], Callable[[], Awaitable[None]]]] = []

    def before_next(self, matches: Callable[[httpx.Request], bool], action: Callable[[], Awaitable[None]]) -> None:
        self._before.append((matches, action))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for i, (matches, action) in enumerate(self._before):
            if matches(request):
                del self._before[i]
                await action()
                break
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class UnleashHarness:
    """``FlagHarness`` for ``UnleashFlagStore``: human edits go through the raw Admin API. Workflows are recorded
    as the store touches them, for ``settle`` and for deleting their flags at the module's end (the contract's
    ``wf`` is recorded by the test module: seeds use it)."""

    def __init__(self, store: UnleashFlagStore, human: HumanAdmin, created: set[str], transport: Interleave) -> None:
        self.touched: set[str] = set()
        self.created = created  # every workflow of the module, deleted at its end
        self.unleash = store
        self.store: FlagStore = RecordingStore(store, self.touched)
        self.human = human
        self.transport = transport

    def edit_during_next_write(self, flag_name: str, percent: int) -> None:
        """Just before the store's PATCH of the strategy leaves, after the store read the flag to prepare it."""

        def is_the_write(request: httpx.Request) -> bool:
            return request.method == "PATCH" and f"/features/{flag_name}/environments/" in request.url.path

        self.transport.before_next(is_the_write, lambda: self.human.edit_percent(flag_name, percent))

    async def settle(self) -> None:
        """Wait until ``UnleashClient`` sees what the Admin API shows, for every workflow this test touched."""
        self.created.update(self.touched)
        await asyncio.gather(*(self.unleash.wait_for_routing(wf) for wf in sorted(self.touched)))

    def forget(self) -> None:
        self.created.update(self.touched)


async def eventually(fn: Any, *, timeout_s: float = 30.0, interval_s: float = 0.2) -> Any:
    """Call ``fn`` until it stops raising a retryable error, as an activity retry would."""
    from diachronic.errors import DiachronicError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await fn()
        except DiachronicError as exc:
            if not exc.retryable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def ci_on_unleash(client: Client, flags: UnleashFlagStore, data_dir: Path) -> AsyncIterator[str]:
    """A CI worker whose activities use the Unleash store; yields its task queue."""
    task_queue = f"ci-{uuid.uuid4()}"
    workers = LocalWorkers(data_dir / "workers", grace_s=2.0)
    async with ci_worker(client, task_queue, CIActivities(flags, workers, client, environment="development")):
        try:
            yield task_queue
        finally:
            await workers.stop_all()
