"""The response cache of the ASGI middleware (storage is wired once ``il.cache`` lands)."""

from __future__ import annotations

from typing import Any

from interlock._http import Exchange, HttpCore


class AsgiResponseCache:
    """Placeholder: runs the app; cache decisions are made in ``interlock._http_cache``."""

    def __init__(self, interlock: Any, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core

    async def handle(
        self, ex: Exchange, scope: Any, receive: Any, send: Any, app: Any, routes: Any
    ) -> None:
        await app(scope, receive, send)
