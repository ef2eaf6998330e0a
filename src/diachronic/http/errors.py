"""The one place where our errors become HTTP statuses and JSON bodies.

Every error a handler raises is one of ``diachronic.errors`` (adapters translate their libraries' exceptions
first); this table gives it a status. Anything else is a defect: logged with its traceback, answered with a
generic 500 that reveals nothing. Messages are ours and never contain a secret.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from diachronic.errors import (
    AlreadyStarted,
    BackendError,
    ConcurrentEdit,
    ConfigError,
    DiachronicError,
    InvalidInput,
    NotFound,
    TimedOut,
    UpdateRejected,
)
from diachronic.signaler.errors import InvalidInstruction, TaskQueueNotFound
from diachronic.webhook.errors import BadSignature, PayloadError, WebhookDisabled

__all__ = [
    "STATUS",
    "ErrorBody",
    "PayloadTooLarge",
    "Problem",
    "Unauthorized",
    "error_response",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger(__name__)


class Unauthorized(DiachronicError):
    """Missing or wrong bearer token on ``POST /instruction``."""

    name = "Unauthorized"


class PayloadTooLarge(InvalidInput):
    name = "PayloadTooLarge"


# Most specific first; ``status_of`` walks the class's MRO, so a subclass without an entry gets its parent's status.
STATUS: dict[type[DiachronicError], int] = {
    AlreadyStarted: 409,
    ConcurrentEdit: 409,
    UpdateRejected: 422,
    InvalidInstruction: 400,
    PayloadError: 400,
    PayloadTooLarge: 413,
    InvalidInput: 400,
    Unauthorized: 401,
    BadSignature: 401,
    TaskQueueNotFound: 404,
    NotFound: 404,
    WebhookDisabled: 503,
    ConfigError: 503,
    TimedOut: 504,
    BackendError: 503,
    DiachronicError: 500,
}


class Problem(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a stable ``error`` name, a human ``message``, and the bad fields of a 400."""

    error: str = Field(examples=["InvalidInstruction"])
    message: str
    problems: list[Problem] | None = None


def status_of(error: DiachronicError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _problems(error: DiachronicError) -> list[Problem] | None:
    if isinstance(error, InvalidInstruction):
        return [Problem(field=f, message=m) for f, m in error.problems]
    if isinstance(error, PayloadError):
        return [Problem(field=error.field, message=error.problem)]
    return None


def error_response(error: DiachronicError) -> JSONResponse:
    status = status_of(error)
    body = ErrorBody(error=error.name, message=error.message, problems=_problems(error))
    headers = {}
    if status == 401 and isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="diachronic"'
    elif status == 503:
        headers["Retry-After"] = "5"
    if status >= 500:
        log.warning("%s %s: %s", status, error.name, error.message)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_ours(request: Request, error: Exception) -> Response:
        assert isinstance(error, DiachronicError)
        return error_response(error)

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        name = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HTTPError")
        body = ErrorBody(error=name, message=str(error.detail))
        return JSONResponse(body.model_dump(exclude_none=True), status_code=error.status_code, headers=error.headers)

    async def on_validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in error.errors()]
        return error_response(InvalidInstruction(problems))

    async def on_defect(request: Request, error: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        body = ErrorBody(error="InternalError", message="internal error: see the server's log")
        return JSONResponse(body.model_dump(exclude_none=True), status_code=500)

    app.add_exception_handler(DiachronicError, on_ours)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_defect)
