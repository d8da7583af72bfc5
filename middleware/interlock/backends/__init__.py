"""Coordination backends: ``mem://`` (embedded) and Redis (single, TLS, Cluster).

The async implementations live in ``interlock._async.backend.base`` and
``interlock._async.backend.redis``; their sync twins are generated into ``interlock._sync``.
"""

from interlock.backends._script import Arg, Script

__all__ = ["Arg", "Script"]
