"""The ECS JSON formatter and configure_logging()."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from interlock import Interlock, request_context
from interlock.logs import (
    REDACTED,
    EcsJsonFormatter,
    Redactor,
    configure_logging,
    redact_query,
    unconfigure_logging,
)
from interlock.testing import metric_value


def _line(record_logger: str = "t", msg: Any = "hello", *args: Any, **extra: Any) -> dict[str, Any]:
    formatter = EcsJsonFormatter("svc", environment="test")
    record = logging.getLogger(record_logger).makeRecord(
        record_logger, logging.WARNING, "f.py", 1, msg, args, None, None, extra
    )
    text = formatter.format(record)
    assert "\n" not in text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_ecs_base_fields() -> None:
    line = _line("app.orders", "placed %s", "order-1", **{"order.id": 7})
    assert line["message"] == "placed order-1"
    assert line["log.level"] == "warning"
    assert line["log.logger"] == "app.orders"
    assert line["service.name"] == "svc" and line["service.environment"] == "test"
    assert line["ecs.version"].startswith("8.")
    assert line["order.id"] == 7
    assert line["@timestamp"].endswith("Z") and "T" in line["@timestamp"]
    time.strptime(line["@timestamp"][:19], "%Y-%m-%dT%H:%M:%S")


def test_hostile_text_still_gives_one_valid_json_line() -> None:
    nasty = 'new\nline "quoted" \\ back \x00 nul \udcff lone-surrogate \u2028 sep'
    line = _line("t", nasty, **{"url.path": nasty, "app.weird": b"\xff\xfe", "app.n": math.nan})
    assert line["message"].startswith("new\nline")
    assert "\udcff" not in line["message"] and "\ufffd" in line["message"]
    assert line["app.n"] == "nan"
    assert isinstance(line["app.weird"], str)


def test_unserialisable_and_broken_values_do_not_lose_the_line() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

        __repr__ = __str__

    cyclic: list[Any] = []
    cyclic.append(cyclic)
    values = {"app.obj": object(), "app.broken": Broken(), "app.when": time.gmtime(0)}
    line = _line("t", "m", **values)
    assert line["app.broken"] in ("__could_not_encode__", "<unprintable Broken>")
    assert "object" in line["app.obj"]
    fallback = _line("t", "m", **{"app.loop": cyclic})
    assert fallback["message"] == "m"


def test_nested_mappings_become_dotted_keys_and_credentials_are_redacted() -> None:
    line = _line(
        "t",
        "m",
        http={"request": {"headers": {"Authorization": "Bearer abc", "accept": "x/y"}}},
        **{
            "http.response.headers.set_cookie": "sid=1",
            "cookie": "a=b",
            "url.query": "a=1&token=zz",
        },
    )
    assert line["http.request.headers.Authorization"] == REDACTED
    assert line["http.request.headers.accept"] == "x/y"
    assert line["http.response.headers.set_cookie"] == REDACTED
    assert line["labels.cookie"] == REDACTED  # an undotted extra: a label, still redacted
    assert line["url.query"] == f"a=1&token={REDACTED}"
    assert "Bearer" not in json.dumps(line)


def test_query_redaction() -> None:
    assert redact_query("a=1&Password=x&b=&token") == f"a=1&Password={REDACTED}&b=&token"
    assert redact_query("sentinel_password=s3c&x=1") == f"sentinel_password={REDACTED}&x=1"
    assert redact_query("/p?sig=abc", ["sig"]) == f"/p?sig={REDACTED}"
    assert redact_query("plain") == "plain"
    custom = Redactor(fields=["x-tenant-secret"], query=["session_id"])
    data = custom({"h.x_tenant_secret": "s", "url.full": "http://h/?session_id=1&q=2"})
    assert data == {
        "h.x_tenant_secret": REDACTED,
        "url.full": f"http://h/?session_id={REDACTED}&q=2",
    }


def test_exceptions_become_error_fields() -> None:
    formatter = EcsJsonFormatter()
    try:
        raise ValueError("bad value")
    except ValueError:
        import sys

        record = logging.getLogger("t").makeRecord(
            "t", logging.ERROR, "f", 1, "failed", (), sys.exc_info()
        )
    line = json.loads(formatter.format(record))
    assert line["error.type"] == "ValueError"
    assert line["error.message"] == "bad value"
    assert "Traceback" in line["error.stack_trace"]


def test_request_context_fields_are_added() -> None:
    with request_context("rid-1", "a" * 32, "b" * 16):
        line = _line()
    assert (line["http.request.id"], line["trace.id"], line["span.id"]) == (
        "rid-1",
        "a" * 32,
        "b" * 16,
    )
    assert "http.request.id" not in _line()


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    unconfigure_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_configure_logging_writes_json_lines_synchronously() -> None:
    stream = io.StringIO()
    configure_logging("shop", stream=stream, queue_size=0)
    configure_logging("shop", stream=stream, queue_size=0)  # replaces, does not duplicate
    logging.getLogger("anything").info("one %d", 1)
    logging.getLogger("anything").debug("filtered")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["service.name"] == "shop"


@pytest.mark.usefixtures("restore_root")
def test_configure_logging_queue_flushes_on_unconfigure_and_counts_drops() -> None:
    class Slow(io.StringIO):
        def write(self, text: str) -> int:
            time.sleep(0.05)
            return super().write(text)

    with Interlock("mem://") as il:
        stream = Slow()
        handler = configure_logging("shop", stream=stream, queue_size=2, interlock=il)
        for i in range(50):
            logging.getLogger("burst").warning("line %d", i)
        unconfigure_logging()
        written = stream.getvalue().splitlines()
        dropped = handler.dropped  # type: ignore[attr-defined]
        assert dropped > 0 and len(written) + dropped == 50
        assert all(json.loads(line)["message"].startswith("line ") for line in written)
        assert metric_value(il, "interlock_log_records_dropped_total", sink="stream") == dropped


@pytest.mark.usefixtures("restore_root")
@pytest.mark.parametrize("queue_size", [10_000, 0], ids=["background-writer", "synchronous"])
def test_request_line_is_the_same_on_the_direct_and_the_standard_path(queue_size: int) -> None:
    from interlock.http._core import HttpCore

    with Interlock("mem://") as il:
        core = HttpCore(il)
        stream = io.StringIO()
        configure_logging("shop", stream=stream, queue_size=queue_size)  # the direct path

        def request() -> None:
            ex = core.begin("GET", "/p/1", "", "token=x", {"user-agent": "ua\udcff"}, "::1")
            ex.request_id, ex.trace_id, ex.span_id = "r", "a" * 32, "b" * 16
            ex.status = 200
            core.finish(ex)

        request()
        filtered = logging.Filter("nothing")  # any filter: the standard LogRecord path
        logging.getLogger().addFilter(filtered)
        try:
            request()
        finally:
            logging.getLogger().removeFilter(filtered)
        logging.getLogger("interlock.http").addFilter(lambda record: True)
        try:
            request()
        finally:
            logging.getLogger("interlock.http").filters.clear()
        unconfigure_logging()
        direct, *standard = (json.loads(line) for line in stream.getvalue().splitlines())
        assert len(standard) == 2
        for line in (direct, *standard):
            line.pop("@timestamp")
            line.pop("event.duration")
        assert direct == standard[0] == standard[1]
        assert direct["url.query"] == f"token={REDACTED}"
        assert direct["user_agent.original"] == "ua\ufffd"
