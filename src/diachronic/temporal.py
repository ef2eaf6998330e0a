"""The one place that connects to Temporal: where the connection comes from, how it is made, what its errors mean.

Where (``resolve_connection``), the convention Temporal's CLI and SDKs share, then ours on top:

1. the embedded default: ``127.0.0.1:7233``, namespace ``default``, plain text;
2. the profile (``TEMPORAL_PROFILE``, else ``default``) of ``temporal.toml`` (``TEMPORAL_CONFIG_FILE``, else
   ``~/.config/temporalio/temporal.toml``);
3. ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``, ``TEMPORAL_TLS_*``
   (read by ``temporalio.envconfig``, exactly as the SDK does);
4. ``DIACHRONIC_TEMPORAL_*`` settings and the CLI's flags.

An API key turns TLS on unless TLS is explicitly off (the SDK's rule). The CI worker, the HTTP app, every CLI
command and the local workers diachronic starts (``TemporalConnection.environment``) all connect this way.

Errors (``connect``): whatever the SDK raises becomes one line that says what is wrong and what to check, without
the API key or key material: a credential problem is a non-retryable ``ConfigError``; an unreachable or not yet
healthy server is a retryable ``BackendError``.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfigProfile, DataSource
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from diachronic.errors import BackendError, ConfigError, DiachronicError, InvalidInput
from diachronic.settings import DEFAULT_TEMPORAL_PORT, Settings

__all__ = [
    "DEFAULT_ADDRESS",
    "Pem",
    "TemporalConnection",
    "TemporalTLS",
    "connect",
    "connect_error",
    "has_poller",
    "resolve_connection",
    "wait_for_poller",
    "wait_until_serving",
]

DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_TEMPORAL_PORT}"
DEFAULT_NAMESPACE = "default"


class Pem(BaseModel):
    """A PEM source: a file, or the PEM text itself (a profile's ``data``; kept secret, it may be a private key)."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    data: SecretStr | None = None

    @classmethod
    def of(cls, source: DataSource | None) -> Pem | None:
        if source is None:
            return None
        if isinstance(source, Path):
            return cls(path=source)
        text = source.decode() if isinstance(source, bytes) else source
        return cls(data=SecretStr(text))

    def read(self, what: str) -> bytes:
        if self.data is not None:
            return self.data.get_secret_value().encode()
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise ConfigError(f"cannot read the {what} {self.path}: {error.strerror}") from None

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "inline PEM"


class TemporalTLS(BaseModel):
    """TLS towards Temporal; every field unset means TLS with the system's CAs and no client certificate."""

    model_config = ConfigDict(frozen=True)

    server_ca: Pem | None = None
    client_cert: Pem | None = None
    client_key: Pem | None = None
    server_name: str | None = None

    def config(self) -> TLSConfig:
        return TLSConfig(
            server_root_ca_cert=self.server_ca.read("TLS server CA certificate") if self.server_ca else None,
            client_cert=self.client_cert.read("TLS client certificate") if self.client_cert else None,
            client_private_key=self.client_key.read("TLS client key") if self.client_key else None,
            domain=self.server_name,
        )


class TemporalConnection(BaseModel):
    """Where and how to reach Temporal, resolved; safe to print (``describe``, ``repr``: no secret)."""

    model_config = ConfigDict(frozen=True)

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    api_key: SecretStr | None = None
    tls: TemporalTLS | None = None  # None: plain text
    rpc_metadata: dict[str, str] = {}
    profile: str | None = None  # the temporal.toml profile that was read, for messages

    def describe(self) -> str:
        """``address (namespace N; TLS, client certificate, API key)`` — what, never the secrets themselves."""
        how = ["TLS" if self.tls else "plain text"]
        if self.tls and self.tls.server_ca:
            how.append(f"CA {self.tls.server_ca.describe()}")
        if self.tls and self.tls.client_cert:
            how.append(f"client certificate {self.tls.client_cert.describe()}")
        if self.api_key is not None:
            how.append("API key")
        if self.profile:
            how.append(f"profile {self.profile}")
        return f"{self.address} (namespace {self.namespace}; {', '.join(how)})"

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of ``Client.connect`` (reads the PEM files: ``ConfigError`` if one cannot be)."""
        return {
            "target_host": self.address,
            "namespace": self.namespace,
            "api_key": self.api_key.get_secret_value() if self.api_key else None,
            "tls": self.tls.config() if self.tls else False,
            "rpc_metadata": dict(self.rpc_metadata),
        }

    def environment(self) -> dict[str, str | None]:
        """Variables that make a process diachronic starts (a local worker) reach Temporal exactly like this one.

        Both conventions: ``TEMPORAL_*`` for any SDK's environment configuration, ``DIACHRONIC_TEMPORAL_*`` for
        workers built on diachronic. The connection is complete in them, so whatever the child would inherit
        that could add to it or contradict it is removed (``None``): the profile, the other form of each PEM
        (the SDK refuses a path and data together), an API key we do not use. ``TEMPORAL_CONFIG_FILE`` points
        at an empty file, so no ``temporal.toml`` adds to it either."""
        tls = self.tls or TemporalTLS()
        env: dict[str, str | None] = {
            "TEMPORAL_CONFIG_FILE": os.devnull,
            "TEMPORAL_PROFILE": None,
            "DIACHRONIC_TEMPORAL_CONFIG_FILE": None,
            "DIACHRONIC_TEMPORAL_PROFILE": None,
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": self.namespace,
            "TEMPORAL_TLS": "true" if self.tls else "false",
            "TEMPORAL_API_KEY": self.api_key.get_secret_value() if self.api_key else None,
            "TEMPORAL_TLS_SERVER_NAME": tls.server_name,
            "DIACHRONIC_TEMPORAL_ADDRESS": self.address,
            "DIACHRONIC_TEMPORAL_NAMESPACE": self.namespace,
            "DIACHRONIC_TEMPORAL_TLS": "true" if self.tls else "false",
            "DIACHRONIC_TEMPORAL_API_KEY": self.api_key.get_secret_value() if self.api_key else "",  # "": none
            "DIACHRONIC_TEMPORAL_TLS_SERVER_NAME": tls.server_name,
        }
        for pem, sdk, ours in (
            (tls.server_ca, "TEMPORAL_TLS_SERVER_CA_CERT", "DIACHRONIC_TEMPORAL_TLS_CA"),
            (tls.client_cert, "TEMPORAL_TLS_CLIENT_CERT", "DIACHRONIC_TEMPORAL_TLS_CERT"),
            (tls.client_key, "TEMPORAL_TLS_CLIENT_KEY", "DIACHRONIC_TEMPORAL_TLS_KEY"),
        ):
            path = str(pem.path.absolute()) if pem and pem.path else None  # absolute: the child may run elsewhere
            data = pem.data.get_secret_value() if pem and pem.data else None
            env |= {f"{sdk}_PATH": path, f"{sdk}_DATA": data, ours: path}
        for key, value in self.rpc_metadata.items():
            env[f"TEMPORAL_GRPC_META_{key.upper().replace('-', '_')}"] = value
        return env


def _profile(settings: Settings, environ: Mapping[str, str]) -> ClientConfigProfile:
    config_file = settings.temporal_config_file or (
        Path(environ["TEMPORAL_CONFIG_FILE"]) if environ.get("TEMPORAL_CONFIG_FILE") else None
    )
    if config_file is not None and not config_file.exists():
        raise ConfigError(
            f"the Temporal config file {config_file} does not exist "
            "(DIACHRONIC_TEMPORAL_CONFIG_FILE or TEMPORAL_CONFIG_FILE)"
        )
    try:
        return ClientConfigProfile.load(
            settings.temporal_profile, config_source=config_file, override_env_vars=dict(environ)
        )
    except RuntimeError as error:  # the SDK's envconfig ConfigError: a TOML error, an unknown profile
        where = config_file or "temporal.toml"
        # The first line only: TOML errors go on to quote the offending line, which may hold an API key.
        raise ConfigError(f"cannot load the Temporal profile from {where}: {str(error).splitlines()[0]}") from None


def resolve_connection(settings: Settings, environ: Mapping[str, str] | None = None) -> TemporalConnection:
    """The connection the settings and Temporal's environment configuration describe (see the module doc)."""
    environ = os.environ if environ is None else environ
    profile = _profile(settings, environ)
    tls_profile = profile.tls
    api_key = settings.temporal_api_key
    if api_key is None and profile.api_key:
        api_key = SecretStr(profile.api_key)
    if api_key is not None and not api_key.get_secret_value():
        api_key = None  # an empty key: explicitly none
    server_ca = Pem(path=settings.temporal_tls_ca) if settings.temporal_tls_ca else None
    client_cert = Pem(path=settings.temporal_tls_cert) if settings.temporal_tls_cert else None
    client_key = Pem(path=settings.temporal_tls_key) if settings.temporal_tls_key else None
    server_name = settings.temporal_tls_server_name
    if tls_profile is not None:
        server_ca = server_ca or Pem.of(tls_profile.server_root_ca_cert)
        client_cert = client_cert or Pem.of(tls_profile.client_cert)
        client_key = client_key or Pem.of(tls_profile.client_private_key)
        server_name = server_name or tls_profile.server_name
    enabled = settings.temporal_tls
    if enabled is None and tls_profile is not None and tls_profile.disabled is not None:
        enabled = not tls_profile.disabled
    if enabled is None:
        enabled = api_key is not None or tls_profile is not None or bool(server_ca or client_cert or client_key)
    if enabled and (client_cert is None) != (client_key is None):
        given, missing = ("certificate", "private key") if client_key is None else ("private key", "certificate")
        raise ConfigError(
            f"a TLS client {given} is configured without its {missing}: set both "
            "DIACHRONIC_TEMPORAL_TLS_CERT and DIACHRONIC_TEMPORAL_TLS_KEY (or TEMPORAL_TLS_CLIENT_CERT_PATH and "
            "TEMPORAL_TLS_CLIENT_KEY_PATH)"
        )
    return TemporalConnection(
        address=settings.temporal_address or profile.address or DEFAULT_ADDRESS,
        namespace=settings.temporal_namespace or profile.namespace or DEFAULT_NAMESPACE,
        api_key=api_key,
        tls=TemporalTLS(server_ca=server_ca, client_cert=client_cert, client_key=client_key, server_name=server_name)
        if enabled
        else None,
        rpc_metadata=dict(profile.grpc_meta),
        profile=settings.temporal_profile or environ.get("TEMPORAL_PROFILE") or None,
    )


# What the SDK's connect errors say, and what to tell a person instead. Checked in order; the first match wins.
_CAUSES: list[tuple[re.Pattern[str], bool, str]] = [
    (
        re.compile(r"status: 401|code: Unauthenticated|code: PermissionDenied", re.I),
        False,
        "the API key was refused: check DIACHRONIC_TEMPORAL_API_KEY / TEMPORAL_API_KEY (or the profile's api_key)",
    ),
    (
        re.compile(r"InconsistentKeys|KeyMismatch", re.I),
        False,
        "the TLS client key does not belong to the client certificate: check DIACHRONIC_TEMPORAL_TLS_KEY",
    ),
    (
        re.compile(r"UnknownIssuer|BadSignature|invalid peer certificate", re.I),
        False,
        "the server's certificate is not signed by a trusted CA: set DIACHRONIC_TEMPORAL_TLS_CA (or "
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH) to the CA that signed it",
    ),
    (
        re.compile(r"NotValidForName", re.I),
        False,
        "the server's certificate is not valid for this address: set DIACHRONIC_TEMPORAL_TLS_SERVER_NAME to a name "
        "it is issued for",
    ),
    (
        re.compile(r"UnsupportedCertVersion", re.I),
        False,
        "a certificate is X.509 v1, which TLS here refuses: issue it as v3 (with extensions)",
    ),
    (
        re.compile(r"status: 400|protocol error|CertificateRequired|certificate required|handshake", re.I),
        False,
        "the server (or a proxy in front of it) refused the TLS handshake or the request; most often a missing or "
        "untrusted client certificate: check DIACHRONIC_TEMPORAL_TLS_CERT / TEMPORAL_TLS_CLIENT_CERT_PATH",
    ),
    (
        re.compile(r"not healthy|code: Unavailable|status: 50[234]", re.I),
        True,
        "Temporal is not serving yet (unavailable); retry shortly",
    ),
    (
        re.compile(r"Connection refused|ConnectionRefused", re.I),
        True,
        "connection refused: is Temporal running there? (DIACHRONIC_TEMPORAL_ADDRESS / TEMPORAL_ADDRESS)",
    ),
    (
        re.compile(r"dns error|failed to lookup address", re.I),
        False,
        "the host name does not resolve: check DIACHRONIC_TEMPORAL_ADDRESS / TEMPORAL_ADDRESS",
    ),
    (
        re.compile(r"connection closed|Cancelled|broken pipe|reset by peer", re.I),
        True,
        "the server closed the connection: does it expect TLS (DIACHRONIC_TEMPORAL_TLS=true) or plain text?",
    ),
    (re.compile(r"timed? ?out|deadline", re.I), True, "no answer in time: is the address reachable from here?"),
]


# Plain text to a TLS port: an HTTP 400 from a proxy, or the connection closed during the gRPC exchange.
_PLAIN_REFUSED = re.compile(r"status: 400|protocol error|connection closed|code: Cancelled", re.I)


def connect_error(error: Exception, connection: TemporalConnection) -> DiachronicError:
    """One line for a failed connect: what is wrong and what to check; never the API key or key material."""
    text = str(error)
    where = f"cannot connect to Temporal at {connection.address}"
    if connection.tls is None and _PLAIN_REFUSED.search(text):
        return ConfigError(
            f"{where}: it does not speak plain gRPC; does it expect TLS? (DIACHRONIC_TEMPORAL_TLS=true or "
            "TEMPORAL_TLS=true; an API key turns TLS on by itself)"
        )
    for pattern, retryable, meaning in _CAUSES:
        if pattern.search(text):
            if retryable:
                return BackendError(f"{where}: {meaning}", retryable=True)
            return ConfigError(f"{where}: {meaning}")
    detail = text.splitlines()[0] if text else type(error).__name__
    detail = re.sub(r"metadata: MetadataMap.*", "", detail)[:200]
    if connection.api_key is not None:
        detail = detail.replace(connection.api_key.get_secret_value(), "***")
    return BackendError(f"{where}: {detail}", retryable=True)


async def connect(target: Settings | TemporalConnection) -> Client:
    """A client for the configured Temporal, speaking pydantic models on the wire; errors are ours, one line."""
    connection = target if isinstance(target, TemporalConnection) else resolve_connection(target)
    options = connection.client_options()
    try:
        return await Client.connect(**options, data_converter=pydantic_data_converter)
    except (RuntimeError, ValueError) as error:  # the SDK's "Failed client connect: ...", a malformed address
        raise connect_error(error, connection) from None


async def wait_until_serving(
    connection: TemporalConnection,
    *,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
) -> Client:
    """Connect, retrying with back-off while Temporal is not serving yet (a server just started opens its port
    before its frontend is healthy); a credential error fails at once, and so does ``alive()`` turning false."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.05
    while True:
        try:
            return await connect(connection)
        except BackendError as error:
            if not alive():
                raise ConfigError(f"Temporal at {connection.address} stopped while starting: {error.message}") from None
            if loop.time() + delay > deadline:
                raise ConfigError(
                    f"Temporal at {connection.address} is not serving after {timeout_s:.0f} s: {error.message}"
                ) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


LIVE_POLLER_S = 90.0
"""A worker long-polls for up to a minute, then polls again: one not seen for 90 s is gone (Temporal keeps
listing a poller for minutes after it stopped)."""


async def live_pollers(client: Client, task_queue: str) -> int:
    """How many workers polled ``task_queue`` for workflow tasks within ``LIVE_POLLER_S`` (DescribeTaskQueue)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    recent = datetime.now(UTC) - timedelta(seconds=LIVE_POLLER_S)
    return sum(1 for poller in response.pollers if poller.last_access_time.ToDatetime(tzinfo=UTC) >= recent)


async def has_poller(client: Client, task_queue: str) -> bool:
    """Whether some worker polls ``task_queue`` for workflow tasks right now."""
    return await live_pollers(client, task_queue) > 0


async def wait_for_poller(client: Client, task_queue: str, *, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await has_poller(client, task_queue):
        if asyncio.get_running_loop().time() > deadline:
            raise ConfigError(f"no worker polls task queue {task_queue!r} after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


def visibility_string(value: str) -> str:
    """Quote a value for a visibility query (names are validated, but never trust a string in a query)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_filter(text: str, option: str) -> str:
    """A user's visibility query that narrows one of ours (``AND (<text>)``): its strings closed, its parentheses
    balanced, no ``ORDER BY`` or ``GROUP BY``, so that it cannot change what the query around it means. The server
    judges the rest (an unknown attribute, a bad operator): ``InvalidInput`` naming ``option`` either way."""
    value = text.strip()
    if not value:
        raise InvalidInput(f'{option}: empty; give a visibility query such as WorkflowId STARTS_WITH "trial-"')
    depth, quote, outside = 0, "", []
    chars = iter(value)
    for char in chars:
        if quote:
            if char == "\\":
                next(chars, None)
            elif char == quote:
                quote = ""
            continue
        if char in "\"'`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise InvalidInput(f"{option} {text!r}: a ')' closes nothing")
        outside.append(char)
    if quote:
        raise InvalidInput(f"{option} {text!r}: a string is not closed ({quote})")
    if depth:
        raise InvalidInput(f"{option} {text!r}: a '(' is not closed")
    if re.search(r"\b(order|group)\s+by\b", "".join(outside), re.IGNORECASE):
        raise InvalidInput(f"{option} {text!r}: a filter cannot sort or group (ORDER BY, GROUP BY)")
    return value


def narrowed(query: str, text: str | None) -> str:
    """``query`` AND a user's filter (checked by ``check_filter``)."""
    return query if text is None else f"{query} AND ({text})"


async def count_narrowed(client: Client, query: str, text: str | None, option: str) -> int:
    """How many workflows ``query`` AND the user's filter ``text`` match; a filter the server refuses is an
    ``InvalidInput`` naming ``option`` and the filter."""
    try:
        return (await client.count_workflows(narrowed(query, text))).count
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT and text is not None:
            raise InvalidInput(f"{option} {text!r}: Temporal refused it: {error.message}") from None
        raise


def visibility_time(moment: datetime) -> str:
    """A time in a visibility query (``CloseTime >= ...``): quoted RFC 3339 in UTC."""
    return visibility_string(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
