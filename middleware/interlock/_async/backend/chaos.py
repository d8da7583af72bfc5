"""A backend wrapper that injects the faults of a :class:`~interlock.chaos.ChaosPlan`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from interlock._async.backend.base import AsyncBackend, Subscriber
from interlock._concurrency import async_sleep
from interlock.backends._script import Arg, Script
from interlock.chaos._plan import ChaosPlan
from interlock.errors import BackendUnavailable
from interlock.metrics import Metrics


class AsyncChaosBackend:
    """Delays or fails backend operations as the plan says, then delegates."""

    def __init__(self, backend: AsyncBackend, plan: ChaosPlan, metrics: Metrics) -> None:
        self.inner = backend
        self.url = backend.url
        self.signals = backend.signals
        self._plan = plan
        self._metrics = metrics

    async def _inject(self, operation: str) -> None:
        for rule in self._plan.faults(operation):
            self._metrics.chaos_injected.labels(kind=rule.kind, target=rule.target).inc()
            if rule.kind == "latency":
                await async_sleep(rule.seconds)
            else:
                raise BackendUnavailable(f"chaos: injected failure of {operation}")

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        budget: float | None = None,
    ) -> Any:
        await self._inject(script.name)
        return await self.inner.run(script, keys, args, budget=budget)

    async def run_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        for script, _, _ in calls:
            await self._inject(script.name)
        return await self.inner.run_many(calls)

    async def execute(self, *args: Arg) -> Any:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        await self._inject(name.upper())
        return await self.inner.execute(*args)

    @property
    def restarts(self) -> int:
        return self.inner.restarts

    async def subscribe(
        self, channel: str, callback: Subscriber, timeout: float | None = None
    ) -> None:
        await self.inner.subscribe(channel, callback, timeout)

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        await self.inner.unsubscribe(channel, callback)

    def on_reset(self, callback: Callable[[], None]) -> None:
        self.inner.on_reset(callback)

    async def wait_signal(self, key: str, timeout: float) -> bytes | None:
        await self._inject("BLPOP")
        return await self.inner.wait_signal(key, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()
