"""Compatibility layer: the five documented chat APIs served from the core event stream.

One thin module per API (see ``../shared/contracts.md``), each an encoder from core events to
that API's SSE frames plus a few dozen lines of endpoint. Depends on ``realtime``; the core
never imports this package. The dialects arrive in later issues.
"""
