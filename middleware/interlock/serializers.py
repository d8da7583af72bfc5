"""Value serializers for the cache: msgpack (default), JSON, and HMAC-signed pickle.

A serializer turns a value into bytes and back; its ``codec`` number is stored in every
cache entry, so a payload written by one serializer is never handed to another (a pickle
planted under a msgpack cache's key is rejected before anything decodes it).

* :class:`MsgpackSerializer` (the default) is compact and fast, and lossless for JSON types
  plus ``datetime``, ``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, ``bytes``,
  integers of any size and non-string dict keys. Tuples come back as lists, as with JSON;
  aware datetimes keep their UTC offset (a ``ZoneInfo`` becomes a fixed offset).
* :class:`JsonSerializer` writes plain JSON, for caches that other languages read.
* :class:`PickleSerializer` handles any picklable object but must be given an HMAC key:
  every payload is signed, and one whose signature does not verify is never unpickled.

Write your own by implementing :class:`Serializer` with a ``codec`` from 16 to 255.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import pickle  # used only by PickleSerializer, after its HMAC check
import uuid
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import msgpack  # type: ignore[import-untyped]

from interlock.errors import ConfigError, SerializationError

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer", "Serializer"]


@runtime_checkable
class Serializer(Protocol):
    """Turns cache values into bytes and back.

    Attributes:
        codec: a number identifying the format, stored with each entry (1-15 are
            interlock's, 16-255 are free for your own serializers).
    """

    codec: int

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raise :class:`SerializationError` if it cannot be encoded."""

    def loads(self, data: bytes) -> Any:
        """Decode ``data``; raise :class:`SerializationError` if it is not valid."""


# A failed PickleSerializer.dumps raises SerializationError from one of these: callers that
# must re-raise it as pickle's own (the Django backend) need not import pickle themselves.
PickleError = pickle.PickleError

# msgpack extension type codes of MsgpackSerializer (part of the stored format).
_EXT_DATETIME, _EXT_DATE, _EXT_TIME, _EXT_TIMEDELTA = 1, 2, 3, 4
_EXT_DECIMAL, _EXT_UUID, _EXT_BIGINT = 5, 6, 7


def _to_ext(value: Any) -> msgpack.ExtType:
    if isinstance(value, dt.datetime):  # before date: datetime is a date
        return msgpack.ExtType(_EXT_DATETIME, value.isoformat().encode())
    if isinstance(value, dt.date):
        return msgpack.ExtType(_EXT_DATE, value.isoformat().encode())
    if isinstance(value, dt.time):
        return msgpack.ExtType(_EXT_TIME, value.isoformat().encode())
    if isinstance(value, dt.timedelta):
        parts = f"{value.days},{value.seconds},{value.microseconds}"
        return msgpack.ExtType(_EXT_TIMEDELTA, parts.encode())
    if isinstance(value, Decimal):
        return msgpack.ExtType(_EXT_DECIMAL, str(value).encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_EXT_UUID, value.bytes)
    if isinstance(value, int):  # beyond 64 bits
        return msgpack.ExtType(_EXT_BIGINT, str(value).encode())
    raise TypeError(
        f"{type(value).__name__} is not supported by the msgpack serializer; convert it to "
        "JSON types (or datetime, Decimal, UUID, bytes), or use PickleSerializer"
    )


def _from_ext(code: int, data: bytes) -> Any:
    text = data.decode() if code != _EXT_UUID else ""
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(text)
    if code == _EXT_DATE:
        return dt.date.fromisoformat(text)
    if code == _EXT_TIME:
        return dt.time.fromisoformat(text)
    if code == _EXT_TIMEDELTA:
        days, seconds, micros = (int(part) for part in text.split(","))
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _EXT_DECIMAL:
        return Decimal(text)
    if code == _EXT_UUID:
        return uuid.UUID(bytes=data)
    if code == _EXT_BIGINT:
        return int(text)
    raise ValueError(f"unknown msgpack extension type {code}")


class MsgpackSerializer:
    """The default serializer: msgpack with extension types (see the module docstring)."""

    codec = 1

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, default=_to_ext, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot serialize {type(value).__name__}: {exc}") from exc
        return data

    def loads(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, ext_hook=_from_ext, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise SerializationError(f"invalid msgpack payload: {exc}") from exc

    def __repr__(self) -> str:
        return "MsgpackSerializer()"


class JsonSerializer:
    """Plain JSON (UTF-8), for entries read by other languages; not lossless beyond JSON."""

    codec = 2

    def dumps(self, value: Any) -> bytes:
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot serialize {type(value).__name__}: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"invalid JSON payload: {exc}") from exc

    def __repr__(self) -> str:
        return "JsonSerializer()"


class PickleSerializer:
    """Pickle, signed with HMAC-SHA256: only payloads this key signed are ever unpickled.

    Unpickling runs arbitrary code, so anyone able to write to your Redis could otherwise
    run code in your processes. Use a secret of at least 32 random bytes, shared only by
    the processes of this cache.

    Args:
        hmac_key: the signing secret (bytes, at least 16).
        protocol: pickle protocol (default: ``pickle.HIGHEST_PROTOCOL``).
    """

    codec = 3
    _DIGEST = hashlib.sha256().digest_size

    def __init__(self, hmac_key: bytes, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        if not isinstance(hmac_key, bytes) or len(hmac_key) < 16:
            raise ConfigError(
                "PickleSerializer needs hmac_key= a secret of at least 16 bytes "
                "(e.g. secrets.token_bytes(32), shared by every process of the cache)"
            )
        self._key = hmac_key
        self._protocol = protocol

    def _sign(self, body: bytes | memoryview) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        try:
            body = pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:  # pickling fails with many exception types
            raise SerializationError(f"cannot pickle {type(value).__name__}: {exc}") from exc
        return self._sign(body) + body

    def loads(self, data: bytes) -> Any:
        view = memoryview(data)
        signature, body = view[: self._DIGEST], view[self._DIGEST :]
        if len(data) <= self._DIGEST or not hmac.compare_digest(signature, self._sign(body)):
            raise SerializationError("pickle payload failed HMAC verification; not unpickled")
        return pickle.loads(body)  # noqa: S301 - only after hmac.compare_digest verified it

    def __repr__(self) -> str:
        return "PickleSerializer(hmac_key=<redacted>)"


def resolve_serializer(serializer: object) -> Serializer:
    """The serializer named by a cache option (``None``, ``"msgpack"``, ``"json"`` or one)."""
    if serializer is None or serializer == "msgpack":
        return MsgpackSerializer()
    if serializer == "json":
        return JsonSerializer()
    if serializer == "pickle":
        raise ConfigError(
            'serializer="pickle" is refused: unsigned pickle lets whoever writes to Redis run '
            "code; pass serializer=PickleSerializer(hmac_key=<secret bytes>)"
        )
    if isinstance(serializer, Serializer):
        codec = getattr(serializer, "codec", None)
        if isinstance(codec, bool) or not isinstance(codec, int) or not 1 <= codec <= 255:
            raise ConfigError(f"serializer {serializer!r} needs an int codec from 16 to 255")
        return serializer
    raise ConfigError(
        f"serializer={serializer!r} is invalid; use 'msgpack', 'json', or an object with "
        "codec, dumps() and loads() (e.g. PickleSerializer(hmac_key=...))"
    )
