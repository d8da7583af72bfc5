"""Where redis-py's sync and async Redis Cluster clients differ in how they start.

The async client discovers the cluster lazily on its first commands, and concurrent first
commands can race; the sync client discovers it in its constructor. The backend calls
``async_cluster_ready`` / ``cluster_ready`` once, under a mutex, before the first command.
"""

from __future__ import annotations

from typing import Any


async def async_cluster_ready(client: Any) -> None:
    await client.initialize()


def cluster_ready(client: Any) -> None:
    """Nothing to do: the sync client discovered the cluster when it was built."""
