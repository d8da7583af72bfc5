"""RFC 8941 Structured Field Dictionaries, the syntax of targeted cache-control fields.

Only what RFC 9213 needs: :func:`parse_dictionary` turns a field's lines into
``{key: (value, parameters)}`` or ``None`` when the field is not a valid Dictionary (the
caller then ignores the whole field, RFC 9213 §2.1). Values are Python ``int``,
``float`` (sf-decimal), ``str`` (sf-string), :class:`Token`, ``bytes``, ``bool``, or a
``list`` of ``(value, parameters)`` pairs for an Inner List.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TypeAlias

from interlock.http.caching._syntax import Headers, field_lines


class Token(str):
    """An sf-token (distinct from an sf-string of the same characters)."""

    __slots__ = ()


BareItem: TypeAlias = "int | float | str | bytes | bool"
Parameters: TypeAlias = "dict[str, BareItem]"
Member: TypeAlias = "tuple[BareItem | list[tuple[BareItem, Parameters]], Parameters]"

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?")


class _Invalid(Exception):
    pass


class _Reader:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> str:
        found = pattern.match(self.text, self.pos)
        if found is None:
            raise _Invalid
        self.pos = found.end()
        return found.group()


def parse_dictionary(headers: Headers, name: str) -> dict[str, Member] | None:
    """The Dictionary in field ``name``; ``None`` when absent, empty or invalid."""
    lines = field_lines(headers, name)
    if not lines:
        return None
    reader = _Reader(", ".join(lines))
    try:
        members = _dictionary(reader)
    except _Invalid:
        return None
    return members or None


def _dictionary(reader: _Reader) -> dict[str, Member]:
    members: dict[str, Member] = {}
    reader.skip(" ")
    while reader.peek():
        key = reader.match(_KEY)
        if reader.peek() == "=":
            reader.pos += 1
            members[key] = _item_or_inner_list(reader)
        else:
            members[key] = (True, _parameters(reader))
        reader.skip(" \t")
        if not reader.peek():
            break
        if reader.peek() != ",":
            raise _Invalid
        reader.pos += 1
        reader.skip(" \t")
        if not reader.peek():
            raise _Invalid  # a trailing comma
    return members


def _item_or_inner_list(reader: _Reader) -> Member:
    if reader.peek() != "(":
        return _bare_item(reader), _parameters(reader)
    reader.pos += 1
    items: list[tuple[BareItem, Parameters]] = []
    while True:
        reader.skip(" ")
        if reader.peek() == ")":
            reader.pos += 1
            return items, _parameters(reader)
        items.append((_bare_item(reader), _parameters(reader)))
        if reader.peek() not in (" ", ")"):
            raise _Invalid


def _parameters(reader: _Reader) -> Parameters:
    params: Parameters = {}
    while reader.peek() == ";":
        reader.pos += 1
        reader.skip(" ")
        key = reader.match(_KEY)
        value: BareItem = True
        if reader.peek() == "=":
            reader.pos += 1
            value = _bare_item(reader)
        params[key] = value
    return params


def _bare_item(reader: _Reader) -> BareItem:
    char = reader.peek()
    if char == "-" or char.isdigit():
        number = reader.match(_NUMBER)
        return float(number) if "." in number else int(number)
    if char == '"':
        return _string(reader)
    if char == ":":
        end = reader.text.find(":", reader.pos + 1)
        if end < 0:
            raise _Invalid
        encoded = reader.text[reader.pos + 1 : end]
        reader.pos = end + 1
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid from None
    if char == "?":
        reader.pos += 1
        flag = reader.peek()
        if flag not in ("0", "1"):
            raise _Invalid
        reader.pos += 1
        return flag == "1"
    if char.isalpha() or char == "*":
        return Token(reader.match(_TOKEN))
    raise _Invalid


def _string(reader: _Reader) -> str:
    out: list[str] = []
    reader.pos += 1
    while reader.pos < len(reader.text):
        char = reader.text[reader.pos]
        reader.pos += 1
        if char == "\\":
            nxt = reader.peek()
            if nxt not in ('"', "\\"):
                raise _Invalid
            out.append(nxt)
            reader.pos += 1
        elif char == '"':
            return "".join(out)
        elif not " " <= char <= "~":
            raise _Invalid
        else:
            out.append(char)
    raise _Invalid
