"""The one place where redis-py's exceptions become interlock's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.sentinel import MasterNotFoundError

from interlock.errors import BackendError, BackendUnavailable

UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.RedisClusterException,
    redis_errors.BusyLoadingError,
    MasterNotFoundError,  # Sentinel: no (reachable) master for the service name
    AsyncMasterNotFoundError,
    OSError,
)


# (RedisClusterException is not a RedisError: cluster discovery failures raise it)
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.RedisError,
    redis_errors.RedisClusterException,
    OSError,
)


def translate(exc: BaseException, operation: str) -> BackendError:
    """The interlock error for a redis-py error (raise it ``from exc``)."""
    if isinstance(exc, MasterNotFoundError | AsyncMasterNotFoundError):
        return BackendUnavailable(
            f"Redis unavailable during {operation}: {exc}; check the service name in the "
            "redis+sentinel:// URL matches a `sentinel monitor <name>` and a sentinel is reachable"
        )
    if isinstance(exc, UNAVAILABLE):
        return BackendUnavailable(f"Redis unavailable during {operation}: {exc}")
    return BackendError(f"Redis error during {operation}: {exc}")


@contextmanager
def map_redis_errors(operation: str) -> Iterator[None]:
    """Re-raise redis-py errors as :class:`BackendUnavailable` or :class:`BackendError`.

    Hot paths use ``try/except REDIS_ERRORS`` with :func:`translate` directly instead, which
    costs nothing when no error happens.
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        raise translate(exc, operation) from exc
