"""What every outbound HTTP call of the CI's reporting shares (GitHub, notification sinks): which answers a retry
can help, how long the server asks us to wait, and keeping URLs that carry credentials out of log lines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx

from diachronic.errors import BackendError, http_client_error_retryable, retry_after_s, untrusted_certificate

__all__ = ["MAX_RETRY_AFTER_S", "hide_in_logs", "retry_after", "unreachable"]

MAX_RETRY_AFTER_S = 3600.0


def retry_after(response: httpx.Response, *, now: float) -> float | None:
    """How long the server asks us to wait: ``Retry-After`` seconds, else until ``X-RateLimit-Reset`` when the
    rate limit is used up (GitHub), else None. At least a second, at most an hour."""
    wait = retry_after_s(response.headers.get("retry-after"))
    if wait is None and response.headers.get("x-ratelimit-remaining") == "0":
        reset = retry_after_s(response.headers.get("x-ratelimit-reset"))
        wait = None if reset is None else reset - now
    return None if wait is None else min(max(wait, 1.0), MAX_RETRY_AFTER_S)


@contextlib.contextmanager
def unreachable(error: Callable[[str, bool], BackendError]) -> Iterator[None]:
    """A request that got no answer (a timeout, a refused or broken connection, an untrusted certificate, a URL
    the client cannot use) becomes ``error(problem, retryable)``, retryable as ``errors.HTTP_CLIENT_ERRORS`` says.
    The problem names only the kind of failure: httpx's own text can carry the URL."""
    try:
        yield
    except httpx.TimeoutException:
        raise error("no answer in time", True) from None
    except (httpx.HTTPError, httpx.InvalidURL) as failure:
        if untrusted_certificate(failure):
            raise error("its TLS certificate is not trusted", False) from None
        raise error(f"cannot connect ({type(failure).__name__})", http_client_error_retryable(failure)) from None


class _Mask(logging.Filter):
    """Replaces every registered secret in a record's message (httpx logs each request's full URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_mask = _Mask()
logging.getLogger("httpx").addFilter(_mask)


def hide_in_logs(url: str) -> None:
    """Never show ``url`` (a webhook URL whose path is its credential) in httpx's log lines."""
    parts = urlsplit(url)
    for secret in (url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""):
        if len(secret) >= 4:
            _mask.secrets.add(secret)
