"""TLS for tests: a throwaway certificate authority, and Debian's nginx as a TLS-terminating proxy.

The Temporal dev server, Unleash and kmock speak plain text; production puts TLS (and often mTLS and an API key) in
front of them. ``Pki`` makes, with ``cryptography``, a CA and the certificates a test needs: X.509 **v3** with
extensions (the Temporal SDK's rustls refuses v1 certificates), a server certificate for ``localhost`` and
``127.0.0.1``, a client certificate, and an unrelated "rogue" CA with a client certificate of its own (a wrong
credential that still looks right). ``NginxProxy`` terminates TLS in front of one upstream:

- ``grpc``: HTTP/2 gRPC to a Temporal frontend, requiring a client certificate signed by the CA (mTLS) and the
  API key ``Bearer <key>`` in the ``authorization`` header, as Temporal Cloud does;
- ``http``: HTTP/1.1 reverse proxy (Unleash, a Kubernetes API), server TLS only.

nginx runs in the foreground as a child of the test (its own prefix folder, pid file and temp paths, free ports) and
is stopped whatever the outcome. ``make install`` installs ``nginx-light``.

Import with ``from tests.tls_fixtures import ...``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.reliability.harness import free_port

from diachronic.devserver import stop_process, wait_for_port
from diachronic.errors import ConfigError

NGINX = "/usr/sbin/nginx"
API_KEY = "test-api-key-0123456789abcdef"  # a throwaway value, asserted absent from every output


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(folder: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pair:
    pair = Pair(folder / f"{name}.pem", folder / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pair.key.chmod(0o600)
    return pair


class _Authority:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.key = _key()
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.pair = _write(folder, name, self.cert, self.key)

    def issue(self, name: str, *, server: bool) -> Pair:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if server:
            names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _write(self.folder, name, builder.sign(self.key, hashes.SHA256()), key)


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Pki:
    """The certificates of one test module (see the module doc)."""

    ca: Path
    server: Pair
    client: Pair
    rogue_ca: Path
    rogue_client: Pair

    @classmethod
    def create(cls, folder: Path) -> Pki:
        folder.mkdir(parents=True, exist_ok=True)
        ca = _Authority(folder, "diachronic-test-ca")
        rogue = _Authority(folder, "rogue-ca")
        return cls(
            ca=ca.pair.cert,
            server=ca.issue("server", server=True),
            client=ca.issue("client", server=False),
            rogue_ca=rogue.pair.cert,
            rogue_client=rogue.issue("rogue-client", server=False),
        )


_GRPC_LOCATION = """
        if ($http_authorization != "Bearer {api_key}") {{ return 401; }}
        grpc_pass grpc://{upstream};
        grpc_read_timeout 1h;
        grpc_send_timeout 1h;
"""
_HTTP_LOCATION = """
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_read_timeout 1h;
        proxy_buffering off;
"""


@dataclass
class NginxProxy:
    """A running nginx in front of ``upstream``; ``address`` is ``127.0.0.1:<port>`` (TLS)."""

    process: subprocess.Popen[bytes]
    folder: Path
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)  # nginx: SIGTERM is a fast shutdown


def _config(folder: Path, port: int, upstream: str, mode: Literal["grpc", "http"], pki: Pki, api_key: str) -> str:
    tls = f"ssl_certificate {pki.server.cert};\n        ssl_certificate_key {pki.server.key};"
    if mode == "grpc":
        tls += f"\n        ssl_client_certificate {pki.ca};\n        ssl_verify_client on;"
        location = _GRPC_LOCATION.format(api_key=api_key, upstream=upstream)
        listen = f"listen 127.0.0.1:{port} ssl http2;"
    else:
        location = _HTTP_LOCATION.format(upstream=upstream)
        listen = f"listen 127.0.0.1:{port} ssl;"
    temp = "\n    ".join(
        f"{kind}_temp_path {folder / 'tmp' / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers read nothing outside the folder; keep them simple
    return f"""
{user}
daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    {temp}
    server {{
        {listen}
        {tls}
        location / {{{location}        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_proxy(
    folder: Path, upstream: str, *, mode: Literal["grpc", "http"], pki: Pki, api_key: str = API_KEY
) -> Iterator[NginxProxy]:
    """Run nginx in front of ``upstream`` (``host:port``) until the block ends, whatever happens inside it."""
    if not Path(NGINX).exists() and shutil.which("nginx") is None:
        raise RuntimeError("nginx is missing: `make install` installs Debian's nginx-light")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tmp").mkdir(exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(_config(folder, port, upstream, mode, pki, api_key))
    process = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proxy = NginxProxy(process, folder, port)
    try:
        try:
            wait_for_port("127.0.0.1", port, timeout_s=30, process=process)
        except ConfigError as error:
            raise RuntimeError(f"nginx: {error.message}: {proxy.log()}") from None
        yield proxy
    finally:
        proxy.stop()
