"""The one place where redis-py's exceptions become interlock's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from interlock.errors import BackendError, BackendUnavailable

UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.RedisClusterException,
    redis_errors.BusyLoadingError,
    OSError,
)


@contextmanager
def map_redis_errors(operation: str) -> Iterator[None]:
    """Re-raise redis-py errors as :class:`BackendUnavailable` or :class:`BackendError`."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise BackendUnavailable(f"Redis unavailable during {operation}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise BackendError(f"Redis error during {operation}: {exc}") from exc
