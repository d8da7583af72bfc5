"""Lua scripts as documented constants.

Each script is a :class:`Script`: its Lua source starts with a header comment naming its
KEYS, ARGV and return codes. The same source runs on Redis (EVALSHA) and on the embedded
``mem://`` backend (a Lua 5.1 runtime, as in Redis), so there is one implementation of
every atomic step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

Arg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script run atomically by the backend.

    Attributes:
        name: short name used in errors and chaos targets.
        source: the Lua source (Redis 7 / Lua 5.1 dialect; no globals, no cjson).
    """

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)
