"""RESP encoding of one command, for the direct hot path (see ``_async/backend/direct.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from interlock.backends._script import Arg

_PREFIXES: dict[tuple[str, ...], bytes] = {}
_PREFIXES_MAX = 4096  # (verb, sha, keys) prefixes kept; all dropped when full


def pack_command(parts: Sequence[Arg]) -> bytes:
    """The RESP array of bulk strings redis-py would send for ``parts``.

    Strings are UTF-8, numbers their ``repr`` (as redis-py encodes them); bools are refused,
    as redis-py refuses them.
    """
    return b"*%d\r\n%s" % (len(parts), _pack_parts(parts))


def pack_script_call(verb: str, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """``pack_command((verb, sha, len(keys), *keys, *args))``, with the part before ``args``
    packed once: a lock's keys come back on every call of its scripts (half the packing)."""
    key = (verb, sha, *keys)
    prefix = _PREFIXES.get(key)
    if prefix is None:
        if len(_PREFIXES) >= _PREFIXES_MAX:
            _PREFIXES.clear()
        prefix = _PREFIXES[key] = _pack_parts((verb, sha, len(keys), *keys))
    return b"*%d\r\n%s%s" % (len(keys) + len(args) + 3, prefix, _pack_parts(args))


def _pack_parts(parts: Sequence[Arg]) -> bytes:
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, str):
            data = part.encode()
        elif isinstance(part, bytes):
            data = part
        elif (  # the exact types first: isinstance with a union is slow, and bools are ints
            type(part) is int
            or type(part) is float
            or (isinstance(part, int | float) and not isinstance(part, bool))
        ):
            data = repr(part).encode()
        else:
            raise TypeError(f"cannot send {type(part).__name__} {part!r} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
