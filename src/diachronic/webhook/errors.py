"""The webhook's errors; ``diachronic.http.errors`` gives each its HTTP status."""

from __future__ import annotations

from diachronic.errors import ConfigError, DiachronicError, InvalidInput

__all__ = ["BadSignature", "PayloadError", "WebhookDisabled"]


class BadSignature(DiachronicError):
    """Missing or wrong ``X-Hub-Signature-256``: the delivery is dropped before it is even parsed."""

    name = "Unauthorized"


class WebhookDisabled(ConfigError):
    """No webhook secret outside ``diachronic dev``: accepting unsigned deliveries would let anyone deploy."""

    name = "WebhookDisabled"


class PayloadError(InvalidInput):
    """The delivery is malformed; ``field`` names what is wrong (``deployment.sha``, a header...)."""

    name = "InvalidPayload"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
