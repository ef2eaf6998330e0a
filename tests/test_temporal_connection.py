"""Where the Temporal connection comes from, and what its connect errors say: no server needed (but the SDK's own
environment-configuration loader, which is the convention under test)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.envconfig import ClientConfigProfile
from tests.reliability.harness import free_port

from diachronic.errors import BackendError, ConfigError
from diachronic.settings import Settings
from diachronic.temporal import (
    DEFAULT_ADDRESS,
    Pem,
    TemporalConnection,
    TemporalTLS,
    connect_error,
    resolve_connection,
    wait_until_serving,
)

KEY = "tmprl-api-key-SENTINEL-4b1e"
TOML = f"""
[profile.default]
address = "default.example:7233"

[profile.prod]
address = "prod.tmprl.cloud:7233"
namespace = "prod.acct"
api_key = "{KEY}"

[profile.prod.tls]
server_name = "prod.tmprl.cloud"
client_cert_path = "/etc/tls/client.pem"
client_key_path = "/etc/tls/client.key"

[profile.prod.grpc_meta]
x-team = "payments"
"""


def settings(**values: Any) -> Settings:
    return Settings(**values)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text(TOML)
    return path


def test_nothing_configured_is_the_embedded_default_plain_and_local() -> None:
    connection = resolve_connection(settings(), environ={})
    assert connection == TemporalConnection(address=DEFAULT_ADDRESS, namespace="default")
    assert connection.tls is None and connection.api_key is None
    assert connection.client_options()["tls"] is False


def test_a_profile_of_temporal_toml_as_temporals_cli_reads_it(config_file: Path) -> None:
    environ = {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "prod"}
    connection = resolve_connection(settings(), environ=environ)
    assert (connection.address, connection.namespace, connection.profile) == (
        "prod.tmprl.cloud:7233",
        "prod.acct",
        "prod",
    )
    assert connection.api_key is not None and connection.api_key.get_secret_value() == KEY
    assert connection.tls == TemporalTLS(
        client_cert=Pem(path=Path("/etc/tls/client.pem")),
        client_key=Pem(path=Path("/etc/tls/client.key")),
        server_name="prod.tmprl.cloud",
    )
    assert connection.rpc_metadata == {"x-team": "payments"}
    # Without TEMPORAL_PROFILE, the file's default profile.
    assert resolve_connection(settings(), environ={"TEMPORAL_CONFIG_FILE": str(config_file)}).address == (
        "default.example:7233"
    )


def test_temporal_variables_override_the_profile_and_ours_override_both(config_file: Path) -> None:
    environ = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_PROFILE": "prod",
        "TEMPORAL_NAMESPACE": "from-env",
        "TEMPORAL_TLS_CLIENT_CERT_PATH": "/env/client.pem",
    }
    connection = resolve_connection(settings(), environ=environ)
    assert connection.namespace == "from-env"
    assert connection.tls is not None and connection.tls.client_cert == Pem(path=Path("/env/client.pem"))
    ours = settings(
        temporal_address="ours:7233",
        temporal_namespace="ours",
        temporal_tls_cert=Path("/ours/client.pem"),
        temporal_tls_key=Path("/ours/client.key"),
        temporal_api_key=SecretStr(""),  # empty: no key, whatever the profile says
    )
    connection = resolve_connection(ours, environ=environ)
    assert (connection.address, connection.namespace, connection.api_key) == ("ours:7233", "ours", None)
    assert connection.tls is not None
    assert (connection.tls.client_cert, connection.tls.client_key) == (
        Pem(path=Path("/ours/client.pem")),
        Pem(path=Path("/ours/client.key")),
    )


def test_an_api_key_turns_tls_on_unless_tls_is_switched_off() -> None:
    assert resolve_connection(settings(), environ={"TEMPORAL_API_KEY": KEY}).tls == TemporalTLS()
    assert resolve_connection(settings(), environ={"TEMPORAL_API_KEY": KEY, "TEMPORAL_TLS": "false"}).tls is None
    assert resolve_connection(settings(temporal_tls=False), environ={"TEMPORAL_API_KEY": KEY}).tls is None
    assert resolve_connection(settings(temporal_tls=True), environ={}).tls == TemporalTLS()


@pytest.mark.parametrize(
    ("values", "environ"),
    [
        ({"temporal_tls_cert": Path("/c.pem")}, {}),
        ({}, {"TEMPORAL_TLS_CLIENT_KEY_PATH": "/k.pem"}),
    ],
    ids=["certificate without key", "key without certificate"],
)
def test_half_a_client_certificate_is_refused_up_front(values: dict[str, Any], environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="DIACHRONIC_TEMPORAL_TLS_CERT and DIACHRONIC_TEMPORAL_TLS_KEY"):
        resolve_connection(settings(**values), environ=environ)


def test_a_broken_configuration_is_one_line_without_the_key(tmp_path: Path, config_file: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_connection(settings(temporal_config_file=tmp_path / "missing.toml"), environ={})
    with pytest.raises(ConfigError, match="Profile 'staging' not found"):
        resolve_connection(settings(temporal_config_file=config_file, temporal_profile="staging"), environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text(f'[profile.default]\napi_key = "{KEY}\n')  # unterminated string: TOML quotes the line
    with pytest.raises(ConfigError) as raised:
        resolve_connection(settings(), environ={"TEMPORAL_CONFIG_FILE": str(broken)})
    assert KEY not in raised.value.message and "\n" not in raised.value.message


def test_a_missing_certificate_file_is_named_when_connecting(tmp_path: Path) -> None:
    connection = resolve_connection(settings(temporal_tls_ca=tmp_path / "ca.pem"), environ={})
    with pytest.raises(ConfigError, match=r"cannot read the TLS server CA certificate .*ca\.pem: No such file"):
        connection.client_options()


def test_secrets_stay_out_of_descriptions_and_reprs() -> None:
    key_pem = "-----BEGIN PRIVATE KEY-----\nSENTINELKEYMATERIAL\n-----END PRIVATE KEY-----\n"
    environ = {
        "TEMPORAL_API_KEY": KEY,
        "TEMPORAL_TLS_CLIENT_CERT_PATH": "/etc/tls/client.pem",
        "TEMPORAL_TLS_CLIENT_KEY_DATA": key_pem,
    }
    connection = resolve_connection(settings(), environ=environ)
    shown = connection.describe() + repr(connection) + str(connection)
    assert KEY not in shown and "SENTINELKEYMATERIAL" not in shown
    assert "API key" in connection.describe() and "client certificate /etc/tls/client.pem" in connection.describe()


def test_the_environment_handed_to_workers_reaches_temporal_the_same_way(config_file: Path, tmp_path: Path) -> None:
    """A worker diachronic starts resolves, from what it is handed, exactly our connection; and so does any SDK."""
    environ = {
        "TEMPORAL_CONFIG_FILE": str(config_file),
        "TEMPORAL_PROFILE": "prod",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
    }
    ours = resolve_connection(settings(temporal_tls_ca=tmp_path / "ca.pem"), environ=environ)
    # The child inherits our environment, with what we hand it on top (a None removes a variable).
    child_env = {k: v for k, v in (environ | ours.environment()).items() if v is not None}
    child = resolve_connection(settings(**_diachronic_settings(child_env)), environ=child_env)
    assert child.model_dump(exclude={"profile"}) == ours.model_dump(exclude={"profile"})
    # An SDK's own loader, with nothing of ours, reads the same address, namespace, key and TLS files.
    sdk = ClientConfigProfile.load(override_env_vars=child_env)
    assert (sdk.address, sdk.namespace, sdk.api_key) == (ours.address, ours.namespace, KEY)
    assert sdk.tls is not None and sdk.tls.server_root_ca_cert == (tmp_path / "ca.pem")
    assert sdk.tls.client_private_key == Path("/etc/tls/client.key")
    # Plain stays plain, whatever the child would inherit: TLS explicitly off, no key.
    inherited = {"TEMPORAL_API_KEY": KEY, "TEMPORAL_PROFILE": "prod", "TEMPORAL_CONFIG_FILE": str(config_file)}
    plain_env = {k: v for k, v in (inherited | TemporalConnection().environment()).items() if v is not None}
    assert resolve_connection(settings(**_diachronic_settings(plain_env)), environ=plain_env) == TemporalConnection()
    assert ClientConfigProfile.load(override_env_vars=plain_env).to_client_connect_config() == {
        "target_host": DEFAULT_ADDRESS,
        "namespace": "default",
        "tls": False,
    }


def _diachronic_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """What pydantic-settings would read from these DIACHRONIC_TEMPORAL_* variables."""
    fields = {
        "DIACHRONIC_TEMPORAL_ADDRESS": "temporal_address",
        "DIACHRONIC_TEMPORAL_NAMESPACE": "temporal_namespace",
        "DIACHRONIC_TEMPORAL_TLS": "temporal_tls",
        "DIACHRONIC_TEMPORAL_API_KEY": "temporal_api_key",
        "DIACHRONIC_TEMPORAL_TLS_CA": "temporal_tls_ca",
        "DIACHRONIC_TEMPORAL_TLS_CERT": "temporal_tls_cert",
        "DIACHRONIC_TEMPORAL_TLS_KEY": "temporal_tls_key",
        "DIACHRONIC_TEMPORAL_TLS_SERVER_NAME": "temporal_tls_server_name",
    }
    return {field: env[name] for name, field in fields.items() if name in env}


# What the SDK raised in the TLS tests (tests/test_temporal_tls.py), each for one wrong credential.
SDK_ERRORS = {
    "wrong API key": "Failed client connect: `get_system_info` call error after connection: Status { code: Internal, "
    'message: "protocol error: received message with invalid compression flag: 60 (valid flags are 0 and 1) while '
    'receiving response with status: 401 Unauthorized", metadata: MetadataMap { headers: {"server": "nginx"} } }',
    "untrusted client certificate": "Failed client connect: `get_system_info` call error after connection: Status "
    '{ code: Internal, message: "protocol error: received message with invalid compression flag: 60 (valid flags '
    'are 0 and 1) while receiving response with status: 400 Bad Request", metadata: MetadataMap { headers: {} } }',
    "key of another certificate": "Failed client connect: Server connection error: "
    "tonic::transport::Error(Transport, InconsistentKeys(KeyMismatch))",
    "wrong CA": "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))",
    "not running": "Failed client connect: Server connection error: tonic::transport::Error(Transport, ConnectError("
    'ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, kind: ConnectionRefused, message: '
    '"Connection refused" })))',
    "starting": "Failed client connect: `get_system_info` call error after connection: Status { code: Unavailable, "
    'message: "Frontend is not healthy yet", metadata: MetadataMap { headers: {} } }',
}


@pytest.mark.parametrize(
    ("case", "kind", "says"),
    [
        ("wrong API key", ConfigError, "the API key was refused"),
        ("untrusted client certificate", ConfigError, "client certificate"),
        ("key of another certificate", ConfigError, "does not belong to the client certificate"),
        ("wrong CA", ConfigError, "not signed by a trusted CA"),
        ("not running", BackendError, "connection refused"),
        ("starting", BackendError, "not serving yet"),
    ],
)
def test_connect_errors_become_one_line_that_says_what_to_check(case: str, kind: type, says: str) -> None:
    connection = TemporalConnection(address="t.example:7233", api_key=SecretStr(KEY), tls=TemporalTLS())
    error = connect_error(RuntimeError(SDK_ERRORS[case]), connection)
    assert type(error) is kind and says in error.message
    assert error.message.startswith("cannot connect to Temporal at t.example:7233: ")
    assert "\n" not in error.message and KEY not in error.message and "MetadataMap" not in error.message
    assert error.retryable is (kind is BackendError)


def test_plain_text_refused_by_a_tls_port_says_tls() -> None:
    error = connect_error(RuntimeError(SDK_ERRORS["untrusted client certificate"]), TemporalConnection())
    assert isinstance(error, ConfigError) and "does it expect TLS?" in error.message


def test_an_unknown_connect_error_keeps_its_first_line_without_the_key() -> None:
    connection = TemporalConnection(api_key=SecretStr(KEY))
    error = connect_error(RuntimeError(f"Failed client connect: odd {KEY} thing\nsecond line"), connection)
    assert error.message == f"cannot connect to Temporal at {DEFAULT_ADDRESS}: Failed client connect: odd *** thing"


async def test_waiting_for_a_server_that_never_serves_ends_in_one_line() -> None:
    connection = TemporalConnection(address=f"127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match=r"is not serving after 1 s: .*connection refused"):
        await wait_until_serving(connection, timeout_s=1.0)
    with pytest.raises(ConfigError, match="stopped while starting"):
        await wait_until_serving(connection, timeout_s=60.0, alive=lambda: False)
