"""The response cache of the WSGI middleware (storage is wired once ``il.cache`` lands)."""

from __future__ import annotations

from typing import Any

from interlock._http import Exchange, HttpCore


class WsgiResponseCache:
    """Placeholder: runs the app; cache decisions are made in ``interlock._http_cache``."""

    def __init__(self, interlock: Any, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core

    def handle(self, ex: Exchange, environ: Any, start_response: Any, app: Any) -> Any:
        return app(environ, start_response)
