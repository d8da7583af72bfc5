"""Coordination backends: ``mem://`` (embedded) and Redis (single, TLS, Cluster).

The async implementations live in ``interlock._async.backend.base`` and
``interlock._async.backend.redis``; their sync twins are generated into ``interlock._sync``.
What this package exports is pure (no driver imported): the Lua :class:`Script` and the
strict URL grammars.
"""

from interlock.backends._redis_url import RedisTarget, parse_redis_url, redact_url
from interlock.backends._script import Arg, Script
from interlock.backends._sentinel_url import SentinelTarget, parse_sentinel_url

__all__ = [
    "Arg",
    "RedisTarget",
    "Script",
    "SentinelTarget",
    "parse_redis_url",
    "parse_sentinel_url",
    "redact_url",
]
