"""The error tree's stable names and the shared pieces of the one retry rule (``diachronic.errors``)."""

from __future__ import annotations

import ssl

import httpx
import pytest
from tests.http_client_errors import HTTPX2_EXCEPTIONS, HTTPX_EXCEPTIONS

from diachronic.errors import (
    HTTP_CLIENT_ERRORS,
    BackendError,
    ConcurrentEdit,
    ConfigError,
    DiachronicError,
    FlagStoreError,
    GitHubError,
    InvalidInput,
    NotFound,
    NotificationError,
    WorkersError,
    http_client_error_retryable,
    http_status_retryable,
    is_retryable,
    retry_after_s,
)


def test_names_are_stable_and_retryable_only_for_backends() -> None:
    """Workflows, ``status`` and HTTP answers match on these names: renaming a class must not change them."""
    tree = {
        DiachronicError: "DiachronicError",
        InvalidInput: "InvalidInput",
        NotFound: "NotFound",
        ConfigError: "ConfigError",
        ConcurrentEdit: "ConcurrentEdit",
        BackendError: "BackendError",
        FlagStoreError: "FlagStoreError",
        WorkersError: "WorkersError",
        GitHubError: "GitHubError",
        NotificationError: "NotificationError",
    }
    assert {c: c.name for c in tree} == tree
    assert [c for c in tree if c.retryable] == [
        BackendError,
        FlagStoreError,
        WorkersError,
        GitHubError,
        NotificationError,
    ]
    assert WorkersError("x", retryable=False).retryable is False and WorkersError("x").retryable is True


def test_the_http_error_table_names_every_exception_of_both_clients() -> None:
    """A new exception class in httpx or httpx2 fails here until someone decides whether it is retryable."""
    assert {c.__name__ for c in HTTPX_EXCEPTIONS + HTTPX2_EXCEPTIONS} - set(HTTP_CLIENT_ERRORS) == set()


def test_a_class_missing_from_a_table_gets_its_nearest_listed_parents_answer() -> None:
    class NewTimeout(httpx.ReadTimeout): ...

    class NewMistake(httpx.UnsupportedProtocol): ...

    assert is_retryable(NewTimeout("x"), HTTP_CLIENT_ERRORS)
    assert not is_retryable(NewMistake("x"), HTTP_CLIENT_ERRORS)


def test_an_untrusted_certificate_is_never_retryable() -> None:
    """A wrong CA or server name: waiting will not fix it, although the client calls it a connection error."""
    error = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]")
    assert http_client_error_retryable(error)
    error.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert not http_client_error_retryable(error)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-1", 0.0), (None, None), ("Wed, 21 Oct 2026 07:28:00 GMT", None)],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header) == seconds


def test_statuses_a_retry_can_help() -> None:
    assert [s for s in (400, 401, 403, 404, 408, 409, 422, 425, 429, 500, 502, 503) if http_status_retryable(s)] == [
        408, 425, 429, 500, 502, 503
    ]  # fmt: skip
