"""Bytes on the wire: the asyncio TLS fronts, waitress backends, listening sockets, WebSocket
streams and connection governance (docs/manager.md, "Layout")."""
