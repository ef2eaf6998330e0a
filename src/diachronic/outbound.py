"""What every outbound HTTP call of the CI's reporting shares (GitHub, notification sinks): which answers a retry
can help, how long the server asks us to wait, and keeping URLs that carry credentials out of log lines."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx

from diachronic.errors import BackendError

__all__ = ["MAX_RETRY_AFTER_S", "hide_in_logs", "retry_after", "retryable_status", "unreachable"]

MAX_RETRY_AFTER_S = 3600.0


def retryable_status(status: int) -> bool:
    """A timeout, a rate limit or a server fault: trying again later can help; other 4xx answers cannot."""
    return status in (408, 425, 429) or status >= 500


def retry_after(response: httpx.Response, *, now: float) -> float | None:
    """How long the server asks us to wait: ``Retry-After`` seconds, else until ``X-RateLimit-Reset`` when the
    rate limit is used up (GitHub), else None. Bounded to an hour."""
    headers = response.headers
    try:
        if "retry-after" in headers:
            return min(max(float(headers["retry-after"]), 1.0), MAX_RETRY_AFTER_S)
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            return min(max(float(headers["x-ratelimit-reset"]) - now, 1.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None
    return None


@contextlib.contextmanager
def unreachable(error: Callable[[str], BackendError]) -> Iterator[None]:
    """No answer (a timeout, a refused connection, a broken one) becomes ``error(problem)``, which should be
    retryable. The problem names only the kind of failure: httpx's own text can carry the URL."""
    try:
        yield
    except httpx.TimeoutException:
        raise error("no answer in time") from None
    except httpx.TransportError as failure:
        raise error(f"cannot connect ({type(failure).__name__})") from None


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
