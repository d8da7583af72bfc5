"""The app of test_server_logs.py: an ASGI app behind the middleware, logging as apps do."""

from __future__ import annotations

import logging
from typing import Any

from interlock import AsyncInterlock, InterlockMiddleware
from interlock.logs import configure_logging

configure_logging(service="server-logs-app")  # an app's own call: kept, never doubled

_log = logging.getLogger("shop")


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    _log.info("served %s", scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


app = InterlockMiddleware(_hello, interlock=AsyncInterlock("mem://"))
