"""Unleash's own engine (the one inside ``UnleashClient``), offline: the oracle routing is checked against.

``UnleashClient`` is bootstrapped from an in-memory cache holding a ``/api/client/features`` payload, built from
our flags the way the Unleash server builds it (disabled strategies dropped), and is never started: no network.
Nothing here calls diachronic's own evaluation or naming. A pytest plugin (``tests/conftest.py`` loads it): the
fixture ``offline_unleash`` builds such a client for a set of flags, or for the very payload a real Unleash serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from UnleashClient import UnleashClient  # type: ignore[attr-defined]  # re-exported, not in __all__
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from diachronic.flags import VersionFlag

Engine = Callable[[str, str, dict[str, str]], bool]
"""``is_enabled(flag name, userId, context properties)``, as Unleash decides it."""


class MemoryCache(BaseCache):
    """The smallest bootstrapped cache ``UnleashClient`` accepts."""

    def __init__(self, features: dict[str, Any]) -> None:
        self._data: dict[str, Any] = {FEATURES_URL: json.dumps(features)}
        self.bootstrapped = True

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        self._data.update(data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._data

    def destroy(self) -> None:
        self._data.clear()


def client_payload(flags: Sequence[VersionFlag]) -> dict[str, Any]:
    """What ``GET /api/client/features`` would serve for these flags: no archived flags, no disabled strategies."""
    features = []
    for flag in flags:
        if flag.archived:
            continue
        strategies = [
            s.model_dump(mode="json", by_alias=True, include={"name", "constraints", "parameters"})
            for s in flag.strategies
            if not s.disabled
        ]
        features.append({"name": flag.info.flag_name, "enabled": flag.enabled, "strategies": strategies})
    return {"version": 2, "features": features}


@pytest.fixture
def offline_unleash() -> Iterator[Callable[[Sequence[VersionFlag] | Mapping[str, Any]], Engine]]:
    """Build an offline ``UnleashClient`` for a set of flags, or for a ``/api/client/features`` payload as a real
    Unleash served it; returns ``is_enabled(name, user_id, properties)``."""
    clients: list[UnleashClient] = []

    def build(source: Sequence[VersionFlag] | Mapping[str, Any]) -> Engine:
        payload = dict(source) if isinstance(source, Mapping) else client_payload(source)
        client = UnleashClient(
            url="http://127.0.0.1:9",  # never contacted: initialize_client() is not called
            app_name="diachronic-tests",
            disable_metrics=True,
            disable_registration=True,
            cache=MemoryCache(payload),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
        )
        clients.append(client)

        def is_enabled(name: str, user_id: str, properties: dict[str, str]) -> bool:
            return bool(client.is_enabled(name, {"userId": user_id, "properties": properties}))

        return is_enabled

    yield build
    for client in clients:
        client.destroy()


# The wire protocol's flag name (docs/architecture.md), parsed here without diachronic.versions.
_FLAG_NAME = re.compile(r"^workflow\.(?P<workflow>[^.]+)\.seqId\.(?P<seq>\d{3,})\.version\.(?P<version>[^.]+)$")


def routed_queue(engine: Engine, flag_names: Iterable[str], workflow_id: str, *, is_test: bool) -> str | None:
    """The wire protocol's routing rule, with Unleash deciding each flag: of the version flags (by name; others are
    ignored), the newest (highest sequence id, as a number) that Unleash enables for ``{userId: workflowId,
    isTest}`` wins; its task queue ``<workflowName>-<versionId>``, or None."""
    properties = {"isTest": "true" if is_test else "false"}
    parsed = [m for name in flag_names if (m := _FLAG_NAME.match(name))]
    for match in sorted(parsed, key=lambda m: int(m["seq"]), reverse=True):
        if engine(match.string, workflow_id, properties):
            return f"{match['workflow']}-{match['version']}"
    return None
