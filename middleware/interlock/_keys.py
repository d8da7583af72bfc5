"""Key construction: namespaced, hash-tagged, and safe against user-controlled parts.

A user key (``str``, ``int`` or a tuple of those) is percent-encoded so that it cannot
contain ``:``, ``{``, ``}``, ``%``, whitespace or control characters; it can therefore
never escape its namespace nor choose another Redis Cluster slot. Keys longer than
``MAX_KEY_BYTES`` once encoded are replaced by a SHA-256 digest.

Layout: ``<namespace>:<kind>:{<name>:<encoded key>}`` — the braces are the Redis Cluster
hash tag, so every key of one lock or cache entry lands in the same slot.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

from interlock.errors import ConfigError

KeyPart = str | int
Key = KeyPart | tuple[KeyPart, ...]

MAX_KEY_BYTES = 200
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SAFE = "!\"#$&'()*+,-./;<=>?@[\\]^_`|~"  # printable ASCII minus : { } % and space
_PLAIN = re.compile(r"[A-Za-z0-9_.\-/@+=]+\Z")  # needs no quoting (the common case)


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid, low-cardinality label value.

    Raises:
        ConfigError: when the name is not 1-64 characters of ``A-Z a-z 0-9 _ . -``.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{kind} name {name!r} is invalid: names are metric labels chosen in code, "
            "1-64 characters from A-Z a-z 0-9 _ . - (put user data in the key instead)"
        )
    return name


def _encode_part(part: object) -> str:
    if isinstance(part, str):
        if _PLAIN.match(part):
            return part
        return quote(part, safe=_SAFE) if part else "%00empty"
    if isinstance(part, int) and not isinstance(part, bool):
        return str(part)
    raise TypeError(
        f"key part {part!r} has type {type(part).__name__}; use str, int or a tuple of them"
    )


def encode_key(key: object) -> str:
    """Encode a user key into a string that is safe inside a Redis key.

    Args:
        key: a ``str``, an ``int`` or a (non-empty) tuple of them.

    Returns:
        The encoded key; tuples join their encoded parts with ``:``. Keys over
        ``MAX_KEY_BYTES`` become ``#`` plus the SHA-256 hex digest of the encoding.
    """
    if isinstance(key, tuple):
        if not key:
            raise TypeError("an empty tuple is not a valid key")
        encoded = ":".join(_encode_part(part) for part in key)
    else:
        encoded = _encode_part(key)
    if len(encoded) > MAX_KEY_BYTES:
        return "#" + hashlib.sha256(encoded.encode()).hexdigest()
    return encoded


def base_key(namespace: str, kind: str, name: str, key: object) -> str:
    """The hash-tagged base of all Redis keys for one (kind, name, key)."""
    return tagged(namespace, kind, name, encode_key(key))


def tagged(namespace: str, kind: str, name: str, encoded: str) -> str:
    """:func:`base_key` for a key already passed through :func:`encode_key`."""
    return f"{namespace}:{kind}:{{{name}:{encoded}}}"
