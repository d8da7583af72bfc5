"""The near cache's link to the backend: local copies only while invalidations arrive.

The near cache serves nothing until this process listens on the cache's channel: a value
kept before then could miss its invalidation. Once listening, every delete, write and tag
invalidation announced by another process drops the local copies it concerns, and a
reset of the channel (messages may have been lost) clears them all. This process's own
writes drop its copies directly, so their announcements are ignored here.
"""

from __future__ import annotations

from interlock._async.cache.store import AsyncCacheStore
from interlock.cache._local import Health, NearCache, NearEntry
from interlock.errors import BackendError


class AsyncNearLink:
    """Serves the near cache once listening; applies other processes' invalidations."""

    def __init__(self, near: NearCache | None, origin: str) -> None:
        self.near = near
        self.origin = origin
        self.ready = False

    async def lookup(
        self, near: NearCache, encoded: str, store: AsyncCacheStore, health: Health
    ) -> NearEntry | None:
        """The near cache's entry; it serves only once its invalidations arrive."""
        if self.ready:
            return near.get(encoded)
        if health.allow():
            try:
                await store.ensure_listening()
            except BackendError as exc:
                health.failed(exc)
            else:
                self.ready = True
        return None

    def on_event(self, origin: str, op: str, subject: str) -> None:
        """A message on the cache's channel (``op`` ``*``: the channel was reset)."""
        near = self.near
        if near is None:
            return
        if op == "*":
            near.clear()
        elif origin != self.origin:
            if op == "k":
                near.drop(subject)
            elif op == "t":
                near.drop_tag(subject)
