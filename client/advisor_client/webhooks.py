"""Verify a webhook from the Redundancy Advisor in one call (depends only on ``standardwebhooks``).

Events are signed per the Standard Webhooks specification: ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` headers, HMAC-SHA256 with your API key's secret (``GET /v1/webhooks/secret``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify_webhook"]


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """The event (``{type, timestamp, data}``) when ``body`` carries a valid signature made with ``secret``
    less than five minutes ago; else raises :class:`WebhookVerificationError`. Pass the raw body bytes,
    exactly as received (not re-serialised JSON)."""
    event = Webhook(secret).verify(body, {k: v for k, v in headers.items()})
    if not isinstance(event, dict):
        raise WebhookVerificationError("the payload is not a JSON object")
    return event
