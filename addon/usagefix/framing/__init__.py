"""Sans-IO framers: bytes in, events with their exact original bytes out."""

from usagefix.framing.sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent, SSEFramer, parse_fields, replace_data

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEEvent", "SSEFramer", "parse_fields", "replace_data"]
