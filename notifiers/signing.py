"""Webhook signatures in the Standard Webhooks style.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the
signature is HMAC-SHA256 with the shared secret, sent as
``webhook-signature: v1,<base64>`` (several space-separated signatures
when several secrets are configured, for key rotation).  A secret
written ``whsec_<base64>`` is base64-decoded; any other secret is used as
its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of *secret*."""
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode("utf-8")


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return ``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(
    secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes
) -> str:
    """Return the ``webhook-signature`` header value for *secrets*."""
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets)


def verify(
    secret: str, msg_id: str, timestamp: int, body: bytes, header: str
) -> bool:
    """True when one signature of *header* matches (constant time)."""
    expected = signature(secret, msg_id, timestamp, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in header.split()
    )


def split_secrets(value: str | None) -> tuple[str, ...]:
    """Split a configured secret value into its space-separated secrets."""
    return tuple((value or "").split())
