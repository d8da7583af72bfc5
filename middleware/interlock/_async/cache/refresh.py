"""Background refreshes: XFetch early refresh and stale-while-revalidate.

A refresh runs in the background (a task; a daemon thread for the sync ``Cache``) so the
caller keeps the value it has. Across processes one refresh per key runs at a time: the
refresher must take the key's fill lease, and a refresh that fails keeps the lease until
it lapses, so a failing origin is retried once per lease, not once per call, while the
stale value goes on being served (stale-if-error).
"""

from __future__ import annotations

import logging
import time

from interlock._async.cache.load import AsyncLoader
from interlock._async.cache.store import ACQUIRED
from interlock._concurrency import AsyncFlight
from interlock.cache._core import Job
from interlock.errors import BackendError
from interlock.lock._core import new_token

logger = logging.getLogger("interlock.cache")


class AsyncRefresher:
    """Starts at most one background refresh per key in this process."""

    def __init__(self, name: str, loader: AsyncLoader) -> None:
        self.name = name
        self.loader = loader
        self.running: dict[str, AsyncFlight] = {}
        self.closed = False

    def refresh(self, job: Job) -> None:
        """Reload ``job`` in the background unless a load of its key is under way here."""
        key = job.keys.entry
        if self.closed or key in self.running or key in self.loader.flights:
            return
        flight = self.running[key] = AsyncFlight()
        flight.start(lambda: self._refresh(job), background=True)

    async def _refresh(self, job: Job) -> None:
        loader = self.loader
        try:
            token = new_token()
            leased_at, epoch = time.monotonic(), loader.near_epoch()
            reply = await loader.store.lease(
                job.keys, job.tags, token, loader.lease_ms, job.rejected, True, job.versions
            )
            if reply.state == ACQUIRED:
                job.versions = reply.versions
                seen = job.rejected if reply.present else b""
                await loader.load_and_fill(
                    job, token, reply.generation, seen, leased_at, epoch, True
                )
        except BackendError as exc:
            loader.health.failed(exc)
        except Exception as exc:  # the caller already has a value; report, don't raise
            logger.warning(
                "background refresh of cache %r failed: %s",
                self.name,
                exc,
                extra={
                    "event.action": "cache-refresh-failed",
                    "interlock.cache.name": self.name,
                    "interlock.cache.key": job.keys.encoded,
                    "error.message": str(exc),
                    "error.type": type(exc).__name__,
                },
            )
        finally:
            self.running.pop(job.keys.entry, None)

    async def aclose(self) -> None:
        self.closed = True
        for flight in list(self.running.values()):
            await flight.settle(2.0)
