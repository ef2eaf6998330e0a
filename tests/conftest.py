"""Shared fixtures: the real time-skipping server and the real dev server (from the venv's binaries), a CI worker
on the dev server, and the HTTP app in front of it."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from tests.ci_helpers import CIHarness, ci_harness, serving
from tests.github_api import GitHubApi, start_early
from tests.http_helpers import served, settings

from diachronic.devserver import dynamic_config_args
from diachronic.settings import venv_binary
from diachronic.simulation.runner import time_skipping_server

# The process backstop (tests/processes.py), pytester for the test that checks it, Unleash's engine offline, the
# real Unleash (the `unleash` fixture).
pytest_plugins = ["tests.processes", "pytester", "tests.unleash_engine", "tests.unleash_fixtures"]


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java test server: time skips whenever every workflow waits on a timer. No visibility. One per test (it
    starts in a fraction of a second): an activity or child an earlier test left in flight holds the server's
    time-skipping lock, and a later test's virtual hour would then pass at wall speed."""
    env = await time_skipping_server()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal dev server with a database file, as in production-like runs; has visibility."""
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        dev_server_database_filename=str(db),
        dev_server_extra_args=dynamic_config_args(),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def wf() -> str:
    """A workflow name of this test alone (on the shared dev server)."""
    return "wf" + uuid.uuid4().hex[:8]


@pytest.fixture
async def wf_served(dev_env: WorkflowEnvironment, wf: str) -> AsyncIterator[str]:
    """In-process workers polling the queues of ``wf``'s v1 to v3: the CI routes no traffic to a version before a
    worker polls its queue."""
    async with serving(dev_env.client, wf, "v1", "v2", "v3"):
        yield wf


@pytest.fixture
async def h(dev_env: WorkflowEnvironment, data_dir: Path) -> AsyncIterator[CIHarness]:
    """A CI worker on the dev server, on its own task queue, with the embedded flag store and local workers."""
    async with ci_harness(dev_env.client, data_dir, f"ci-{uuid.uuid4()}") as harness:
        yield harness


@pytest.fixture
async def http(h: CIHarness, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP app (webhook, signaler, dashboard) for ``h``'s CI, on a free loopback port."""
    async with served(settings(data_dir, ci_task_queue=h.task_queue), h.client, h.flags) as client:
        yield client


# -- GitHub's API behind a validating proxy (tests/github_api.py), started once, early, only when needed ----------

_github: list[GitHubApi] = []


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start prism while the first tests run: it takes seconds to load GitHub's description."""
    if any("github_api" in getattr(item, "fixturenames", ()) for item in items):
        _github.append(start_early(Path(tempfile.mkdtemp(prefix="diachronic-prism-"))))


def pytest_unconfigure(config: pytest.Config) -> None:
    while _github:
        api = _github.pop()
        api.stop()
        shutil.rmtree(api.log.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def github_api() -> GitHubApi:
    api = _github[0]
    api.wait_ready()
    return api


@pytest.fixture
def github(github_api: GitHubApi) -> Iterator[GitHubApi]:
    """The validating GitHub API with a fresh recorder."""
    github_api.recorder.reset()
    yield github_api
    github_api.recorder.reset()
