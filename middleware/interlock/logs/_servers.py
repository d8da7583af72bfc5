"""Log configs for uvicorn and gunicorn: their own lines as ECS JSON too.

uvicorn and gunicorn configure logging themselves, before the application is imported and,
with ``--workers``, in a supervisor process that never imports it: their loggers
(``uvicorn.error``, ``uvicorn.access``, ``gunicorn.error``, ``gunicorn.access``) get
plain-text handlers of their own and do not propagate, so ``configure_logging()`` in the
app cannot reach them. These dictConfig configs replace the servers' defaults: every
process, the supervisor included, writes every logger's records as JSON lines on stdout
through one :func:`json_handler`. A ``configure_logging()`` call in the app then keeps that
handler (giving it the app's formatter) instead of adding a second one.
"""

from __future__ import annotations

import logging
from typing import IO, Any

from interlock.logs._formatter import EcsJsonFormatter
from interlock.logs._redact import Redactor
from interlock.logs._writer import QueueingHandler

_HANDLER = "interlock"


def json_handler(
    service: str | None = None,
    *,
    environment: str | None = None,
    stream: IO[str] | None = None,
    queue_size: int = 10_000,
) -> logging.Handler:
    """The JSON-lines handler of :func:`configure_logging`, for a ``dictConfig`` ``"()"``.

    Args:
        service: ``service.name`` of every line.
        environment: ``service.environment``.
        stream: where lines go (``sys.stdout`` by default).
        queue_size: as for :func:`configure_logging` (``0`` writes synchronously).
    """
    from interlock.logs._configure import stream_handler

    formatter = EcsJsonFormatter(service, environment=environment, processors=[Redactor()])
    handler = stream_handler(formatter, stream, queue_size)
    if isinstance(handler, QueueingHandler):
        handler.server_config = True
    return handler


def _config(
    service: str | None,
    environment: str | None,
    level: str,
    loggers: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    handler: dict[str, Any] = {"()": "interlock.logs.json_handler"}
    if service:
        handler["service"] = service
    if environment:
        handler["environment"] = environment
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {},
        "handlers": {_HANDLER: handler},
        "root": {"level": level, "handlers": [_HANDLER]},
        "loggers": loggers,
    }


def uvicorn_log_config(
    service: str | None = None,
    *,
    level: str = "INFO",
    access: bool = True,
    environment: str | None = None,
) -> dict[str, Any]:
    """A ``dictConfig`` for uvicorn: its server and access lines become ECS JSON lines.

    Pass it as ``uvicorn.run(app, log_config=uvicorn_log_config("shop"))``, or write it to a
    JSON file for ``uvicorn app:app --log-config log.json``::

        interlock log-config uvicorn --service shop > log.json

    Args:
        service: ``service.name`` of every line.
        level: level of the root logger and uvicorn's loggers.
        access: keep uvicorn's access lines (one per request, ``log.logger: uvicorn.access``);
            ``False`` drops them like ``--no-access-log``. The middleware's request line
            already says more about each request.
        environment: ``service.environment``.
    """
    through_root = {"handlers": [], "propagate": True, "level": level}
    return _config(
        service,
        environment,
        level,
        {
            "uvicorn": through_root,
            "uvicorn.error": through_root,
            "uvicorn.asgi": through_root,
            "uvicorn.access": through_root if access else {**through_root, "level": "WARNING"},
        },
    )


def gunicorn_log_config(
    service: str | None = None,
    *,
    level: str = "INFO",
    access: bool = True,
    environment: str | None = None,
) -> dict[str, Any]:
    """A ``logconfig_dict`` for gunicorn (``-k uvicorn.workers.UvicornWorker`` or sync).

    In ``gunicorn.conf.py``: ``logconfig_dict = gunicorn_log_config("shop")`` (or
    ``interlock log-config gunicorn --service shop > log.json`` for ``--log-config-json``). The
    master's
    lines, each worker's, uvicorn's inside ``UvicornWorker`` (which copies the handlers of
    ``gunicorn.error`` / ``gunicorn.access``) and the app's become ECS JSON lines on stdout.

    Args:
        service: ``service.name`` of every line.
        level: level of the root logger and the server's loggers.
        access: keep the access lines (``gunicorn.access``, ``uvicorn.access``); ``False``
            drops them.
        environment: ``service.environment``.
    """
    direct = {"handlers": [_HANDLER], "propagate": False, "level": level}
    quiet = {**direct, "level": "WARNING"}
    return _config(
        service,
        environment,
        level,
        {
            "gunicorn.error": direct,
            "gunicorn.access": direct if access else quiet,
            "uvicorn.error": direct,
            "uvicorn.access": direct if access else quiet,
        },
    )
