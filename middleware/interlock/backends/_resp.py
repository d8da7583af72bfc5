"""RESP encoding of one command, for the direct hot path (see ``_async/backend/direct.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from interlock.backends._script import Arg


def pack_command(parts: Sequence[Arg]) -> bytes:
    """The RESP array of bulk strings redis-py would send for ``parts``.

    Strings are UTF-8, numbers their ``repr`` (as redis-py encodes them); bools are refused,
    as redis-py refuses them.
    """
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        kind = type(part)  # the exact types first: the hot path sends str, bytes and int
        if kind is str:
            data = cast(str, part).encode()
        elif kind is bytes:
            data = cast(bytes, part)
        elif kind is int or kind is float:
            data = repr(part).encode()
        elif isinstance(part, bytes):
            data = part
        elif isinstance(part, str):
            data = part.encode()
        elif isinstance(part, int | float) and not isinstance(part, bool):
            data = repr(part).encode()
        else:
            raise TypeError(f"cannot send {type(part).__name__} {part!r} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
