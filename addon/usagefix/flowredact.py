"""Credentials masked in a flow as it will be saved (glue: imports mitmproxy). The request was sent
already, so masking it is harmless; what is a secret, and how it is masked, is usagefix.redaction
(pure, over header tuples and paths).
"""

from __future__ import annotations

from mitmproxy import http

from usagefix.redaction import redact_fields, redact_message_state, redact_path

__all__ = ["redact"]


def redact(flow: http.HTTPFlow) -> None:
    """Mask credentials in the flow as it will be saved (the request was sent, so harmless)."""
    req = flow.request
    if (fields := redact_fields(req.headers.fields)) is not None:
        req.headers.fields = fields
    if (path := redact_path(req.path)) is not None:
        req.path = path
    if flow.response is not None and (fields := redact_fields(flow.response.headers.fields)) is not None:
        flow.response.headers.fields = fields
    # A backup (client replay, edits) is saved with the flow: it holds the originals too.
    backup = getattr(flow, "_backup", None)
    if isinstance(backup, dict):
        redact_message_state(backup.get("request"), is_request=True)
        redact_message_state(backup.get("response"), is_request=False)
