"""Redaction: credential fields and secret query parameters never reach a log line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
REDACT_FIELDS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
REDACT_QUERY = (
    "access_token", "api_key", "apikey", "client_secret", "code", "id_token", "key",
    "password", "refresh_token", "secret", "sentinel_password", "session", "sig",
    "signature", "token",
)  # fmt: skip
_REDACT_QUERY = frozenset(REDACT_QUERY)
_QUERY_FIELDS = ("url.query", "url.full", "url.original")


def redact_query(query: str, names: Iterable[str] = _REDACT_QUERY) -> str:
    """``query`` with the values of parameters in ``names`` (case-insensitive) redacted."""
    if "=" not in query:
        return query
    wanted = names if isinstance(names, frozenset) else frozenset(n.lower() for n in names)
    head, sep, query_part = query.rpartition("?")
    parts = query_part.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and name.lower() in wanted:
            parts[i] = f"{name}={REDACTED}"
            changed = True
    if not changed:
        return query
    return head + sep + "&".join(parts)


class Redactor:
    """A processor: redacts credential fields and secret query parameters.

    Args:
        fields: field names (the last dotted segment, case-insensitive, ``_`` = ``-``)
            whose values are replaced, e.g. ``http.request.headers.authorization``.
        query: query parameters whose values are replaced in ``url.query``/``url.full``.
    """

    def __init__(
        self, fields: Iterable[str] = REDACT_FIELDS, query: Iterable[str] = REDACT_QUERY
    ) -> None:
        self.fields = frozenset(f.lower().replace("_", "-") for f in fields)
        self.query = frozenset(q.lower() for q in query)
        self._harmless: set[str] = set()  # keys seen and judged harmless (bounded)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in data.keys() - self._harmless:
            if key.rpartition(".")[2].lower().replace("_", "-") in self.fields:
                data[key] = REDACTED
            elif len(self._harmless) < 4096:
                self._harmless.add(key)
        if self.query:
            for key in _QUERY_FIELDS:
                value = data.get(key)
                if type(value) is str:
                    data[key] = redact_query(value, self.query)
        return data
