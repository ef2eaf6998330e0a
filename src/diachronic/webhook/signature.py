"""GitHub's ``X-Hub-Signature-256``: HMAC-SHA256 of the raw request body, keyed with the webhook secret."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PREFIX", "sign", "signature_matches"]

PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The header value GitHub sends for ``body`` (tests and the docs' curl example use it)."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body``; constant-time, so timing reveals nothing of the secret."""
    if not header or not secret:
        return False
    expected = sign(secret, body).encode()
    # compare_digest on bytes: a str with non-ASCII characters would raise instead of answering False.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))
