"""usagefix: make LLM token usage honest on the wire.

The core (framing, dialects, normalization, the stream rewriter) is sans-IO and never imports
mitmproxy; `usagefix.addon` is the mitmproxy glue.
"""

__version__ = "0.1.0"
