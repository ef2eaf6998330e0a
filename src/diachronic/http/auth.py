"""The bearer token of ``POST /instruction`` and the dashboard's controls (``DIACHRONIC_SIGNALER_TOKEN``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from diachronic.http.errors import Unauthorized

__all__ = ["BearerToken"]


class BearerToken:
    """``Authorization: Bearer <token>``, compared in constant time; no token set means no authentication."""

    def __init__(self, secret: SecretStr | None) -> None:
        self._token = secret.get_secret_value().encode() if secret is not None else b""

    @property
    def required(self) -> bool:
        return bool(self._token)

    def check(self, headers: Mapping[str, str], *, refusal: str) -> None:
        """Raise Unauthorized (401) with ``refusal`` unless the headers carry the token (or none is required)."""
        if not self._token:
            return
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise Unauthorized(refusal)
