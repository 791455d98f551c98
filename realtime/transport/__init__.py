"""Transports: the WebSocket endpoints and the server's own HTTP routes (Starlette lives here)."""
