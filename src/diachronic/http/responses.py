"""How every route answers: our models as JSON by alias, and the error answers each route documents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_json
from starlette.responses import Response

from diachronic.http.errors import ErrorBody

__all__ = ["error_responses", "json_response"]


def json_response(value: BaseModel | Any, status: int = 200, *, exclude_none: bool = False) -> Response:
    """A model by alias (camelCase); anything else (an update's raw reply) as it came, NaN/Infinity as null."""
    if isinstance(value, BaseModel):
        content = value.model_dump_json(by_alias=True, exclude_none=exclude_none)
        return Response(content, status_code=status, media_type="application/json")
    return Response(to_json(value, inf_nan_mode="null"), status_code=status, media_type="application/json")


def error_responses(texts: Mapping[int, str], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's error statuses, each described by the route family's ``texts``."""
    return {status: {"model": ErrorBody, "description": texts[status]} for status in statuses}
