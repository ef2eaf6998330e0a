"""Every exception class of httpx (Unleash's client) and httpx2 (lightkube's), for the meta-tests that check each
adapter translates all of them (as httpx's ``test_httpcore_all_exceptions_mapped`` does for httpcore)."""

from __future__ import annotations

from types import ModuleType

import httpx
import httpx2


def exported_exceptions(module: ModuleType) -> list[type[Exception]]:
    found = {v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Exception)}
    return sorted(found, key=lambda c: c.__name__)


HTTPX_EXCEPTIONS = exported_exceptions(httpx)
HTTPX2_EXCEPTIONS = exported_exceptions(httpx2)


def instance_of(error_class: type[Exception], request: httpx.Request | httpx2.Request) -> Exception:
    """An instance of any of those classes, as the client would raise it while sending ``request``."""
    if error_class.__name__ == "HTTPStatusError":
        response_class = httpx.Response if isinstance(request, httpx.Request) else httpx2.Response
        return error_class("boom", request=request, response=response_class(500, request=request))  # type: ignore[call-arg]
    try:
        return error_class("boom")
    except TypeError:  # the stream errors take no message
        return error_class()
