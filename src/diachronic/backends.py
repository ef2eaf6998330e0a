"""Open the configured implementation of each port (docs/architecture.md, ports) from the settings."""

from __future__ import annotations

from diachronic.errors import ConfigError
from diachronic.flags import FlagStore
from diachronic.flags.local import LocalFlagStore
from diachronic.settings import Settings
from diachronic.workers import WorkerBackend
from diachronic.workers.local import LocalWorkers


def open_flag_store(settings: Settings) -> FlagStore:
    if settings.flags == "local":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return LocalFlagStore(settings.flags_db)
    if settings.flags == "unleash":
        from diachronic.flags.unleash import UnleashFlagStore  # imports UnleashClient only when asked for

        return UnleashFlagStore.from_settings(settings)
    raise ConfigError(f"flag store {settings.flags!r} is not available in this build")


def open_workers(settings: Settings) -> WorkerBackend:
    if settings.workers == "local":
        return LocalWorkers(settings.workers_dir)
    if settings.workers == "kubernetes":
        from diachronic.workers.kubernetes import KubernetesWorkers  # lightkube loads only where used

        return KubernetesWorkers.from_settings(settings)
    raise ConfigError(f"worker backend {settings.workers!r} is not available in this build")
