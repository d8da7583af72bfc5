"""The demo's built-in load generator: contention on hot SKUs and repeated catalogue reads."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter

import httpx

from interlock.demo.shop import HOT_SKUS, PRODUCTS, SKUS


class LoadGenerator:
    """``workers`` clients sending a mix of requests at about ``rate`` requests/s in total.

    Attributes:
        sent: requests sent; ``errors``: transport failures (the server went away, ...).
        statuses: responses by status code.
    """

    def __init__(self, base_url: str, rate: float = 150.0, workers: int = 12) -> None:
        self.base_url = base_url
        self.rate = rate
        self.workers = workers
        self.sent = 0
        self.errors = 0
        self.statuses: Counter[int] = Counter()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.workers, max_keepalive_connections=self.workers)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=5.0) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(self.workers)))

    async def _worker(self, client: httpx.AsyncClient, index: int) -> None:
        rng = random.Random(index)
        pause = self.workers / self.rate
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            method, path, body = self._pick(rng)
            began = loop.time()
            try:
                response = await client.request(method, path, json=body)
                self.statuses[response.status_code] += 1
            except httpx.HTTPError:
                self.errors += 1
            self.sent += 1
            with contextlib.suppress(TimeoutError):
                wait = rng.uniform(0.5, 1.5) * pause - (loop.time() - began)
                await asyncio.wait_for(self._stop.wait(), max(wait, 0.0))

    @staticmethod
    def _pick(rng: random.Random) -> tuple[str, str, object]:
        roll = rng.random()
        if roll < 0.50:  # product pages, a few popular ones
            product = min(int(rng.paretovariate(1.2)) - 1, PRODUCTS + 2)
            return "GET", f"/products/{product}", None
        if roll < 0.65:
            return "GET", "/products", None
        if roll < 0.85:  # reservations, mostly on the hot SKUs
            sku = rng.choice(HOT_SKUS) if rng.random() < 0.8 else rng.choice(SKUS)
            return "POST", f"/inventory/{sku}/reserve", None
        if roll < 0.995:
            sku = rng.choice(HOT_SKUS) if rng.random() < 0.5 else rng.choice(SKUS)
            return "POST", "/orders", {"sku": sku, "qty": rng.randint(1, 3)}
        if roll < 0.998:
            return "POST", "/admin/restock", None
        return "POST", "/admin/purge", None
