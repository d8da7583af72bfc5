"""on_commit callbacks: coroutine functions are awaited by the async API."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from interlock import AsyncInterlock


@pytest.mark.anyio
async def test_async_on_commit_callbacks_are_awaited() -> None:
    async def main() -> list[str]:
        ail = AsyncInterlock(namespace=f"oc{uuid.uuid4().hex[:8]}")
        seen: list[str] = []

        async def invalidate() -> None:
            await asyncio.sleep(0)
            seen.append("async")

        async with ail.transaction("checkout") as tx:
            tx.redis("inventory").set("sku-1", 3)
            tx.redis("orders").set("o-1", "sku-1")
            tx.on_commit(invalidate)
            tx.on_commit(lambda: seen.append("sync"))
        await ail.aclose()
        return seen

    assert await main() == ["async", "sync"]
