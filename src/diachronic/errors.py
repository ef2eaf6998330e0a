"""The errors diachronic raises, one small tree with stable names.

    DiachronicError            every error of ours; ``name`` is stable, ``retryable`` says whether a retry can help
    ├── InvalidInput           a caller's mistake (bad name, payload, control in the wrong phase); never retryable
    │   ├── AlreadyStarted     a start for a workflow id that is already running
    │   └── UpdateRejected     a workflow refused an update (its validator's or handler's words)
    ├── NotFound               the thing asked for does not exist
    ├── ConfigError            settings missing or inconsistent
    ├── ConcurrentEdit         a conditional write found another value than the one it was based on (a human edit)
    └── BackendError           an external system (flag store, worker sets, Temporal) failed
        ├── FlagStoreError
        ├── WorkersError
        ├── GitHubError        GitHub's REST API (deployment statuses) refused or failed a request
        ├── NotificationError  a notification sink (webhook, Slack, apprise) refused or failed a delivery
        └── TimedOut           a workflow did not answer an update in time

One retry rule for every adapter (Unleash, the embedded flag store, Kubernetes, local workers): translate the
library's exceptions in one place into these, marked retryable or not, and never retry inside the adapter.
Activities turn them into Temporal ``ApplicationError`` with ``type=name``, ``non_retryable=not retryable`` and,
when a server said when to come back, ``next_retry_delay`` (see ``diachronic.ci.activities``): Temporal's activity
retry policy is the one retry layer. Each adapter's tests hold a meta-test that every exception class its library
exports is mapped (as httpx's ``test_httpcore_all_exceptions_mapped`` does).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping


class DiachronicError(Exception):
    """Base of every diachronic error. ``name`` is the class name unless a class says otherwise."""

    name = "DiachronicError"
    retryable = False

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if "name" not in vars(cls):
            cls.name = cls.__name__

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class InvalidInput(DiachronicError):
    """A caller's mistake: fixed by changing the input, never by trying again."""


class AlreadyStarted(InvalidInput):
    """A start for a workflow id that is already running (Temporal's name for it)."""

    name = "WorkflowExecutionAlreadyStarted"

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class UpdateRejected(InvalidInput):
    """A workflow refused an update: its validator's or handler's words."""


class NotFound(DiachronicError):
    """The flag, strategy, workflow or worker set asked for does not exist."""


class ConfigError(DiachronicError):
    """Settings missing or inconsistent: the message names the variable to set."""


class ConcurrentEdit(DiachronicError):
    """A compare-and-set write refused: the value changed since the writer read it. Never retried: the CI treats it
    as a human's edit, which always wins. ``found`` is what the store holds now (None: the value is gone)."""

    def __init__(self, message: str, *, found: int | None = None) -> None:
        super().__init__(message)
        self.found = found


class BackendError(DiachronicError):
    """``retry_after_s``: how long the server asked us to wait before trying again (HTTP ``Retry-After``), if it did."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.retry_after_s = retry_after_s


class FlagStoreError(BackendError):
    """Unleash or the embedded store failed."""


class WorkersError(BackendError):
    """The worker backend (Kubernetes, local processes) failed."""


class GitHubError(BackendError):
    """``status``: GitHub's HTTP status, when it answered."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after_s=retry_after_s)
        self.status = status


class NotificationError(BackendError):
    """A notification sink (a JSON webhook, Slack, apprise) failed."""


class TimedOut(BackendError):
    """A workflow did not answer an update in time (the original signaler's name for it)."""

    name = "RequestResponseTimedOut"


# -- deciding what is retryable, per library, in one table each -------------------------------------------------

RetryTable = Mapping[str, bool]
"""An adapter's answer, per exception class name of its library, to "can trying again help?"."""


def is_retryable(error: BaseException, table: RetryTable) -> bool:
    """``table``'s answer for the most specific class of ``error`` it names, so a subclass a library adds later gets
    its parent's answer (each adapter's meta-test makes sure every class the library exports is named)."""
    return next((table[c.__name__] for c in type(error).__mro__ if c.__name__ in table), True)


HTTP_CLIENT_ERRORS: RetryTable = {
    # The exception classes httpx and httpx2 export (same names), each with whether trying again can help.
    "HTTPError": True,
    "RequestError": True,
    "TransportError": True,
    "TimeoutException": True,
    "ConnectTimeout": True,
    "ReadTimeout": True,
    "WriteTimeout": True,
    "PoolTimeout": True,
    "NetworkError": True,
    "ConnectError": True,
    "ReadError": True,
    "WriteError": True,
    "CloseError": True,
    "RemoteProtocolError": True,  # the server hung up mid-answer
    "ProxyError": True,
    "DecodingError": True,  # a garbled answer
    "ProtocolError": False,
    "LocalProtocolError": False,  # we sent something HTTP does not allow: a bug, not an outage
    "UnsupportedProtocol": False,  # a URL scheme the client cannot speak: a configuration mistake
    "TooManyRedirects": False,
    "HTTPStatusError": False,
    "InvalidURL": False,
    "CookieConflict": False,
    "StreamError": False,
    "StreamConsumed": False,
    "StreamClosed": False,
    "ResponseNotRead": False,
    "RequestNotRead": False,
    "SSEError": False,
}
"""Every exception class of httpx (Unleash's client) and httpx2 (lightkube's): the same names in both."""


def http_status_retryable(status: int) -> bool:
    """An HTTP answer a retry can help: a timeout (408), too early (425), a rate limit (429) or a server fault (5xx);
    any other 4xx says what is wrong with the request, which trying again will not change."""
    return status >= 500 or status in (408, 425, 429)


def untrusted_certificate(error: BaseException) -> bool:
    """Whether a connection failed because the server's certificate is not trusted: waiting will not fix that."""
    seen: BaseException | None = error
    for _ in range(10):  # the TLS error sits a few causes deep
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def http_client_error_retryable(error: BaseException) -> bool:
    """``HTTP_CLIENT_ERRORS``' answer for an httpx or httpx2 error; an untrusted server certificate never is."""
    return not untrusted_certificate(error) and is_retryable(error, HTTP_CLIENT_ERRORS)


def retry_after_s(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` in seconds; None when absent or an HTTP date (rare from our servers)."""
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
