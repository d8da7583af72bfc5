"""``AsyncCache.cached``: cache a function's results (the sync twin decorates plain ones)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from interlock._concurrency import async_check_cacheable
from interlock.cache._core import AsyncCachedFunction, default_key

if TYPE_CHECKING:
    from interlock._async.cache.cache import AsyncCache

P = ParamSpec("P")
R = TypeVar("R")
KeyFunction = Callable[..., object]
TagsOption = Sequence[str | int] | Callable[..., Sequence[str | int]] | None


def cached(
    cache: AsyncCache, key: KeyFunction | None, ttl: float | None, tags: TagsOption
) -> Callable[[AsyncCachedFunction[P, R]], AsyncCachedFunction[P, R]]:
    """The decorator returned by ``AsyncCache.cached`` (see there)."""

    def decorate(function: AsyncCachedFunction[P, R]) -> AsyncCachedFunction[P, R]:
        async_check_cacheable(function)
        make_key = key or default_key(function)

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            call_tags = tags(*args, **kwargs) if callable(tags) else tags or ()
            result: R = await cache.get_or_load(
                make_key(*args, **kwargs),
                lambda: function(*args, **kwargs),
                ttl=ttl,
                tags=call_tags,
            )
            return result

        async def invalidate(*args: Any, **kwargs: Any) -> bool:
            return await cache.delete(make_key(*args, **kwargs))

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return decorate
