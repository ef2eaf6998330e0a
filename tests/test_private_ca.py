"""Unleash and a Kubernetes API behind TLS with a private certificate authority: the real Unleash and kmock, each
behind nginx (``tests/tls_fixtures.py``) with a server certificate the system's CAs do not vouch for.

Unleash: ``DIACHRONIC_UNLEASH_CA_BUNDLE`` makes both the Admin API client and the routing client (``UnleashClient``)
trust it; without it, one line says what to set. Kubernetes: the kubeconfig's own ``certificate-authority-data``
or ``certificate-authority`` is honoured, as kubectl does.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from tests.tls_fixtures import NginxProxy, Pki, nginx_proxy
from tests.unleash_fixtures import UnleashServer, throwaway_workflow

from diachronic.errors import FlagStoreError, WorkersError
from diachronic.flags.unleash import UnleashFlagStore
from diachronic.settings import Settings
from diachronic.workers.kubernetes import KubernetesWorkers, load_kube_config
from kmock_fixtures import TOKEN, running_cluster


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


# -- Unleash -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unleash_tls(unleash: UnleashServer, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProxy]:
    with nginx_proxy(tmp_path_factory.mktemp("nginx-unleash"), urlsplit(unleash.url).netloc, mode="http", pki=pki) as p:
        yield p


@pytest.fixture
async def wf(unleash: UnleashServer) -> AsyncIterator[str]:
    async with throwaway_workflow(unleash, "ca") as name:
        yield name


@pytest.mark.unleash
async def test_unleash_behind_a_private_ca_works_with_the_ca_bundle_setting(
    unleash: UnleashServer, unleash_tls: NginxProxy, pki: Pki, wf: str
) -> None:
    settings = Settings(
        flags="unleash",
        unleash_url=unleash_tls.url,
        unleash_admin_token=unleash.admin_token,
        unleash_client_token=unleash.client_token,
        unleash_project=unleash.project,
        unleash_environment=unleash.environment,
        unleash_ca_bundle=pki.ca,
    )
    store = UnleashFlagStore.from_settings(settings)
    try:
        info = await store.apply_version_flag(wf, "v1")  # Admin API (httpx) over TLS
        await store.wait_for_routing(wf)
        routed = await store.route(wf, "order-1", is_test=True)  # UnleashClient (requests) over TLS
        assert routed is not None and routed.flag_name == info.flag_name
    finally:
        await store.close()


@pytest.mark.unleash
async def test_unleash_behind_a_private_ca_without_the_bundle_says_what_to_set(
    unleash: UnleashServer, unleash_tls: NginxProxy, wf: str
) -> None:
    store = unleash_store(unleash, unleash_tls.url)
    try:
        with pytest.raises(FlagStoreError) as raised:
            await store.apply_version_flag(wf, "v1")
    finally:
        await store.close()
    assert "DIACHRONIC_UNLEASH_CA_BUNDLE" in raised.value.message and not raised.value.retryable
    assert "\n" not in raised.value.message
    assert await unleash_store(unleash, unleash.url).list_version_flags(wf) == []  # nothing was written


def unleash_store(unleash: UnleashServer, url: str) -> UnleashFlagStore:
    return UnleashFlagStore(
        url, unleash.admin_token, unleash.client_token, project=unleash.project, environment=unleash.environment
    )


# -- Kubernetes ----------------------------------------------------------------------------------------------------


def kubeconfig(path: Path, server: str, **cluster: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "private", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "ci", "user": {"token": TOKEN}}],
        "contexts": [{"name": "private", "context": {"cluster": "private", "user": "ci"}}],
        "current-context": "private",
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def test_the_kubeconfigs_own_certificate_authority_is_honoured(pki: Pki, tmp_path: Path) -> None:
    from test_workers_kubernetes import manifest

    async with running_cluster(tmp_path) as cluster:
        await cluster.apply(manifest("orders", "v1"))
        with nginx_proxy(tmp_path / "nginx", urlsplit(cluster.url).netloc, mode="http", pki=pki) as proxy:
            ca_data = base64.b64encode(pki.ca.read_bytes()).decode()
            for name, fields in (
                ("inline", {"certificate-authority-data": ca_data}),
                ("file", {"certificate-authority": str(pki.ca)}),
            ):
                config = load_kube_config(kubeconfig(tmp_path / name, proxy.url, **fields))
                workers = KubernetesWorkers(config)
                try:
                    assert [w.version_id for w in await workers.find("orders", "v1")] == ["v1"], name
                finally:
                    await workers.close()
            untrusting = KubernetesWorkers(load_kube_config(kubeconfig(tmp_path / "none", proxy.url)))
            try:  # the same proxy without the kubeconfig's CA: refused, and it says where to look
                with pytest.raises(WorkersError, match="certificate authority in the kubeconfig"):
                    await untrusting.find("orders", "v1")
            finally:
                await untrusting.close()
