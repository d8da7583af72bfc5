"""Backends: the protocol, ``mem://``, Redis, the direct hot path, pub/sub."""
