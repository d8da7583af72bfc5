"""``interlock demo``: an example shop that uses every feature, driving itself.

Run it with ``interlock demo`` (``--help`` for options). Requires the ``demo`` extra
(Starlette, uvicorn, httpx).
"""

from __future__ import annotations

from interlock.demo.runner import DemoOptions, run

__all__ = ["DemoOptions", "run"]
