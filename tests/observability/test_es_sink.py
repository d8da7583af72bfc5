"""The Elasticsearch log sink (interlock.logs.ElasticsearchSink) with the real client.

Elasticsearch cannot run here, so the official client talks HTTP either to a closed port
or to :class:`FakeElasticsearch`, a small server on 127.0.0.1 answering ``POST /_bulk``
with the responses Elasticsearch 8 documents (docs-bulk.html, "Response body"):

- ``200`` with ``{"took", "errors", "items": [{"create": {"_index", "_id", "status",
  "result"} | {"create": {"_index", "status", "error": {"type", "reason"}}}]}``, one item
  per action, in request order;
- a whole request refused: ``429`` with ``{"error": {"root_cause", "type": "es_rejected_
  execution_exception", "reason"}, "status": 429}``;
- every answer carries ``X-Elastic-Product: Elasticsearch`` (the client checks it), and,
  as Elasticsearch 8.15 of docker-compose.yml does, a request whose ``Accept`` or
  ``Content-Type`` asks for a compatibility version other than 7 or 8 is refused with
  ``400 media_type_header_exception`` (a 9.x client cannot talk to that server).
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from interlock import AsyncInterlock, Interlock, InterlockMiddleware
from interlock.logs import (
    DATA_STREAM,
    ElasticsearchSink,
    QueueingHandler,
    configure_logging,
    unconfigure_logging,
)
from interlock.testing import metric_value

DROPPED = "interlock_log_records_dropped_total"
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
CONTENT_TYPE = "application/vnd.elasticsearch+json;compatible-with=8"
_COMPAT = re.compile(r"compatible-with=(\d+)")

Action = tuple[dict[str, Any], dict[str, Any]]
Responder = Callable[[int, list[Action]], tuple[int, dict[str, Any]]]


# ---------------------------------------------------------------------------- responses


def created(action: Action, n: int) -> dict[str, Any]:
    """A successful ``create`` item, as Elasticsearch writes it into a data stream."""
    return {
        "create": {
            "_index": f".ds-{DATA_STREAM}-2025.01.31-000001",
            "_id": f"doc-{n}",
            "_version": 1,
            "result": "created",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": n,
            "_primary_term": 1,
            "status": 201,
        }
    }


def rejected(status: int) -> dict[str, Any]:
    """A failed ``create`` item: 429 (write queue full) or 400 (the document is invalid)."""
    if status == 429:
        error = {
            "type": "es_rejected_execution_exception",
            "reason": "rejected execution of primary operation [coordinating_and_primary_"
            "bytes=0, replica_bytes=0, all_bytes=0, primary_operation_bytes=512, "
            "max_coordinating_and_primary_bytes=0]",
        }
    else:
        error = {
            "type": "document_parsing_exception",
            "reason": "[1:42] failed to parse field [http.response.status_code] of type "
            "[long] in document with id 'doc'. Preview of field's value: 'abc'",
            "caused_by": {"type": "illegal_argument_exception", "reason": 'For input: "abc"'},
        }
    index = f".ds-{DATA_STREAM}-2025.01.31-000001"
    return {"create": {"_index": index, "status": status, "error": error}}


def accept_all(request: int, actions: list[Action]) -> tuple[int, dict[str, Any]]:
    items = [created(a, i) for i, a in enumerate(actions)]
    return 200, {"took": 3, "errors": False, "items": items}


def too_many_requests() -> tuple[int, dict[str, Any]]:
    reason = "rejected execution of coordinating operation [coordinating_and_primary_bytes=0]"
    cause = {"type": "es_rejected_execution_exception", "reason": reason}
    return 429, {"error": {"root_cause": [cause], **cause}, "status": 429}


# ---------------------------------------------------------------------------- the server


@dataclass
class BulkRequest:
    at: float
    path: str
    headers: dict[str, str]
    actions: list[Action]
    status: int = 0


@dataclass
class FakeElasticsearch:
    """``POST /_bulk`` on 127.0.0.1, answered by ``responder(request_number, actions)``."""

    responder: Responder = accept_all
    requests: list[BulkRequest] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    media_type_rejections: int = 0
    hold: threading.Event | None = None  # when set: requests wait until it is set

    def __post_init__(self) -> None:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # the client sends PUT /_bulk; both are documented
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                fake.handle(self, body)

            do_PUT = do_POST

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def handle(self, handler: http.server.BaseHTTPRequestHandler, body: str) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line]
        actions = list(zip(lines[::2], lines[1::2], strict=True))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = BulkRequest(time.monotonic(), handler.path, headers, actions)
        if self.hold is not None:
            self.hold.wait(30)
        versions = _COMPAT.findall(headers.get("accept", "") + headers.get("content-type", ""))
        if any(v not in ("7", "8") for v in versions):
            self.media_type_rejections += 1
            reason = "Invalid media-type value on headers [Content-Type, Accept]"
            cause = {"type": "media_type_header_exception", "reason": reason}
            status, answer = 400, {"error": {"root_cause": [cause], **cause}, "status": 400}
        elif handler.path.split("?")[0] != "/_bulk":
            status, answer = 404, {"error": "unexpected path", "status": 404}
        else:
            status, answer = self.responder(len(self.requests), actions)
        request.status = status
        self.requests.append(request)
        if status == 200:
            for (_, doc), item in zip(actions, answer["items"], strict=True):
                if 200 <= item["create"]["status"] < 300:
                    self.stored.append(doc)
        data = json.dumps(answer).encode()
        handler.send_response(status)
        for name, value in {**PRODUCT, "Content-Type": CONTENT_TYPE}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_es() -> Iterator[Callable[..., FakeElasticsearch]]:
    servers: list[FakeElasticsearch] = []

    def start(responder: Responder = accept_all, hold: threading.Event | None = None) -> Any:
        server = FakeElasticsearch(responder, hold=hold)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    for server in servers:  # every request used a media type Elasticsearch 8 accepts
        assert server.media_type_rejections == 0


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections are refused, nobody else gets it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    others = [logging.getLogger(name) for name in ("elastic_transport", "httpx")]
    handlers, level, levels = list(root.handlers), root.level, [o.level for o in others]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per test request
    yield
    unconfigure_logging()
    root.handlers[:] = handlers
    root.setLevel(level)
    for other, other_level in zip(others, levels, strict=True):
        other.setLevel(other_level)


def sink(target: str, il: Any = None, **options: Any) -> ElasticsearchSink:
    """A sink with test-friendly timings (overridable)."""
    settings: dict[str, Any] = {
        "flush_interval": 0.05,
        "initial_backoff": 0.05,
        "max_backoff": 0.5,
        "close_timeout": 5.0,
    }
    return ElasticsearchSink(target, interlock=il, **{**settings, **options})


def log_lines(count: int, name: str = "burst") -> list[float]:
    """Log ``count`` records; return the duration of each call in seconds, sorted."""
    log = logging.getLogger(name)
    took = []
    for i in range(count):
        began = time.perf_counter()
        log.info("line %d", i, extra={"order.id": i})
        took.append(time.perf_counter() - began)
    return sorted(took)


# ---------------------------------------------------------------------------- unreachable


def test_unreachable_elasticsearch_drops_and_counts_without_blocking(closed_port: int) -> None:
    with Interlock("mem://") as il:
        es = sink(f"http://127.0.0.1:{closed_port}", il, queue_size=100, batch_size=50,
                  max_retries=2, close_timeout=1.0)  # fmt: skip
        stdout = io.StringIO()
        configure_logging("shop", stream=stdout, elasticsearch=es, interlock=il)
        began = time.perf_counter()
        took = log_lines(2000)
        logging_took = time.perf_counter() - began
        began = time.perf_counter()
        unconfigure_logging()
        stop_took = time.perf_counter() - began

        # The callers never waited for the network (connecting, backing off 0.05-0.5 s):
        # generous bounds for a busy machine, where a thread may lose the CPU for a while.
        assert took[int(len(took) * 0.99)] < 0.02, f"p99 of a log call: {took[-20]:.3f}s"
        assert took[-1] < 1.0, f"one log call took {took[-1]:.3f}s"
        assert logging_took < 3.0, f"2000 log calls took {logging_took:.2f}s"
        assert stop_took < 3.0  # close_timeout 1 s, then every line is accounted for
        assert not es.thread.is_alive()
        assert es.sent == 0 and es.dropped == 2000
        assert metric_value(il, DROPPED, sink="elasticsearch") == 2000
        assert metric_value(il, DROPPED, sink="stream") == 0
        lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
        assert sum(line["log.logger"] == "burst" for line in lines) == 2000  # stdout unharmed
        warnings = [line for line in lines if line.get("event.action") == "log-sink-failing"]
        assert len(warnings) == 1, "one warning per outage, not one per batch"
        assert "ConnectionError" in warnings[0]["message"]
        # The client's per-attempt lines are turned down (the sink reports the outage).
        assert not [line for line in lines if line["log.logger"].startswith("elastic_transport")]


def test_retries_with_backoff_then_gives_up_and_counts(closed_port: int) -> None:
    with Interlock("mem://") as il:
        es = sink(f"http://127.0.0.1:{closed_port}", il, batch_size=10, max_retries=3,
                  initial_backoff=0.1, max_backoff=0.15)  # fmt: skip
        handler = QueueingHandler(es)  # attached by hand, without configure_logging
        began = time.monotonic()
        for i in range(10):
            handler.handle(logging.makeLogRecord({"msg": f"m{i}", "levelno": logging.INFO}))
        handler.close()  # waits for the batch: 0.1 + 0.15 + 0.15 s of backoff
        took = time.monotonic() - began
        assert es.dropped == 10 and es.sent == 0
        assert es.retried == 30  # the batch was sent 1 + 3 times
        assert 0.4 - 0.05 <= took < 5.0
        assert metric_value(il, DROPPED, sink="elasticsearch") == 10


# ---------------------------------------------------------------------------- bulk answers


def test_lines_are_created_in_the_data_stream(fake_es: Callable[..., FakeElasticsearch]) -> None:
    server = fake_es()
    es = sink(server.url)
    configure_logging("shop", stream=io.StringIO(), elasticsearch=es)
    log_lines(120)
    unconfigure_logging()
    assert es.sent == 120 and es.dropped == 0
    assert server.media_type_rejections == 0
    assert [doc["message"] for doc in server.stored] == [f"line {i}" for i in range(120)]
    doc = server.stored[0]
    assert doc["service.name"] == "shop" and doc["order.id"] == 0 and "@timestamp" in doc
    for request in server.requests:
        assert request.path == "/_bulk" and request.status == 200
        assert {json.dumps(a) for a, _ in request.actions} == {
            json.dumps({"create": {"_index": DATA_STREAM}})
        }
        assert "x-ndjson" in request.headers["content-type"]


def test_the_fake_refuses_what_elasticsearch_8_refuses(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    server = fake_es()
    body = '{"create": {"_index": "x"}}\n{"a": 1}\n'
    compat9 = "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
    response = httpx.put(f"{server.url}/_bulk", content=body, headers={"content-type": compat9})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "media_type_header_exception"
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    server.media_type_rejections = 0  # expected here
    compat8 = compat9.replace("=9", "=8")
    response = httpx.put(f"{server.url}/_bulk", content=body, headers={"content-type": compat8})
    assert response.status_code == 200 and response.json()["items"][0]["create"]["status"] == 201


def test_whole_request_429_is_retried_with_backoff_then_succeeds(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    def busy_twice(request: int, actions: list[Action]) -> tuple[int, dict[str, Any]]:
        return too_many_requests() if request < 2 else accept_all(request, actions)

    server = fake_es(busy_twice)
    with Interlock("mem://") as il:
        es = sink(server.url, il, batch_size=100, initial_backoff=0.2, max_backoff=5.0)
        configure_logging("shop", stream=io.StringIO(), elasticsearch=es, interlock=il)
        log_lines(40)
        unconfigure_logging()
        assert [r.status for r in server.requests] == [429, 429, 200]
        assert all(len(r.actions) == 40 for r in server.requests)
        first, second, third = (r.at for r in server.requests)
        assert second - first >= 0.2 - 0.02, "waited initial_backoff"
        assert third - second >= 0.4 - 0.02, "then twice as long"
        assert es.sent == 40 and es.dropped == 0 and es.retried == 80
        assert [doc["message"] for doc in server.stored] == [f"line {i}" for i in range(40)]
        assert metric_value(il, DROPPED, sink="elasticsearch") == 0


def test_partial_failure_retries_429_items_and_drops_400_items(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    # First answer: 200 with errors: true; item i is created, refused with 429 or invalid
    # (400) by i % 3. Later answers accept everything.
    def partial(request: int, actions: list[Action]) -> tuple[int, dict[str, Any]]:
        if request > 0:
            return accept_all(request, actions)
        items = [
            created(a, i) if i % 3 == 0 else rejected(429 if i % 3 == 1 else 400)
            for i, a in enumerate(actions)
        ]
        return 200, {"took": 5, "errors": True, "items": items}

    server = fake_es(partial)
    with Interlock("mem://") as il:
        es = sink(server.url, il, batch_size=30)
        configure_logging("shop", stream=io.StringIO(), elasticsearch=es, interlock=il)
        log_lines(30)
        unconfigure_logging()
        assert [len(r.actions) for r in server.requests] == [30, 10]
        retried = [doc["message"] for _, doc in server.requests[1].actions]
        assert retried == [f"line {i}" for i in range(30) if i % 3 == 1]
        stored = sorted(int(doc["message"].split()[1]) for doc in server.stored)
        assert stored == [i for i in range(30) if i % 3 != 2]  # each exactly once
        assert es.sent == 20 and es.dropped == 10
        assert metric_value(il, DROPPED, sink="elasticsearch") == 10


def test_items_refused_on_every_attempt_are_dropped_after_max_retries(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    def always_busy(request: int, actions: list[Action]) -> tuple[int, dict[str, Any]]:
        return 200, {"took": 1, "errors": True, "items": [rejected(429) for _ in actions]}

    server = fake_es(always_busy)
    with Interlock("mem://") as il:
        es = sink(server.url, il, max_retries=2)
        configure_logging("shop", stream=io.StringIO(), elasticsearch=es, interlock=il)
        log_lines(5)
        unconfigure_logging()
        assert len(server.requests) == 3
        assert es.dropped == 5 and es.sent == 0
        assert metric_value(il, DROPPED, sink="elasticsearch") == 5


@pytest.mark.anyio
async def test_a_hanging_elasticsearch_fills_the_queue_but_never_the_request_path(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    hold = threading.Event()
    server = fake_es(hold=hold)

    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})

    async def scenario() -> list[float]:
        async with AsyncInterlock("mem://") as ail:
            app = InterlockMiddleware(hello, interlock=ail)
            es = sink(server.url, ail, queue_size=50, batch_size=10)
            configure_logging("shop", stream=io.StringIO(), elasticsearch=es, interlock=ail)
            transport = httpx.ASGITransport(app=app)
            timings = []
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for i in range(300):  # the worker is stuck in its first bulk request
                    began = time.perf_counter()
                    response = await client.get(f"/items/{i}")
                    timings.append(time.perf_counter() - began)
                    assert response.status_code == 200
            queued_drops = es.dropped
            hold.set()
            unconfigure_logging()
            assert queued_drops > 0, "the bounded queue overflowed while Elasticsearch hung"
            assert es.sent + es.dropped == 300  # every request line accounted for
            assert metric_value(ail, DROPPED, sink="elasticsearch") == es.dropped
            assert {doc["log.logger"] for doc in server.stored} == {"interlock.http"}
            assert all("http.request.id" in doc for doc in server.stored)
            return timings


    timings = sorted(await scenario())
    assert timings[len(timings) // 2] < 0.05, "median request slowed by the log sink"
    assert timings[-1] < 2.0


def test_bad_options_are_refused_with_the_fix() -> None:
    for options, needle in [
        ({"queue_size": 0}, "queue_size=0"),
        ({"batch_size": 1.5}, "batch_size=1.5"),
        ({"max_retries": -1}, "max_retries=-1"),
        ({"initial_backoff": 0}, "initial_backoff=0"),
        ({"index": ""}, "data stream"),
    ]:
        with pytest.raises(ValueError, match=re.escape(needle)):
            ElasticsearchSink("http://127.0.0.1:9", **options)


def test_configure_logging_again_replaces_the_elasticsearch_handler(
    fake_es: Callable[..., FakeElasticsearch],
) -> None:
    server = fake_es()
    first = sink(server.url)
    configure_logging("shop", stream=io.StringIO(), elasticsearch=first)
    log_lines(3)
    configure_logging("shop", stream=io.StringIO())  # no Elasticsearch any more
    assert not first.thread.is_alive() and first.sent == 3  # flushed, then stopped
    ours = [h for h in logging.getLogger().handlers if isinstance(h, QueueingHandler)]
    assert len(ours) == 1 and not isinstance(ours[0].writer, ElasticsearchSink)
    log_lines(2)
    assert first.sent == 3
