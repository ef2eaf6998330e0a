"""Open the configured implementation of each port (DESIGN §5) from the settings."""

from __future__ import annotations

from diachronic.deployments import WorkerDeployments
from diachronic.deployments.local import LocalWorkerDeployments
from diachronic.errors import ConfigError
from diachronic.flags import FlagStore
from diachronic.flags.local import LocalFlagStore
from diachronic.settings import Settings


def open_flag_store(settings: Settings) -> FlagStore:
    if settings.flags == "local":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return LocalFlagStore(settings.flags_db)
    if settings.flags == "unleash":
        from diachronic.flags.unleash import UnleashFlagStore  # imports UnleashClient only when asked for

        return UnleashFlagStore.from_settings(settings)
    raise ConfigError(f"flag store {settings.flags!r} is not available in this build")


def open_deployments(settings: Settings) -> WorkerDeployments:
    if settings.deployments == "local":
        return LocalWorkerDeployments(settings.deployments_dir)
    if settings.deployments == "kubernetes":
        from diachronic.deployments.kubernetes import KubernetesWorkerDeployments  # lightkube loads only where used

        return KubernetesWorkerDeployments.from_settings(settings)
    raise ConfigError(f"worker deployments backend {settings.deployments!r} is not available in this build")
