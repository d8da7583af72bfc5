"""Shipping log lines straight to Elasticsearch, in bulk, from a background thread.

:class:`ElasticsearchSink` is a writer for :class:`interlock.logs.QueueingHandler`, like
the stdout writer: the handler formats each record in the caller's thread and hands the
line over; :meth:`ElasticsearchSink.put` appends it to a bounded queue and returns at
once. A daemon thread takes up to ``batch_size`` lines at a time (or whatever gathered
within ``flush_interval``) and indexes them into the data stream with the official
client's :func:`elasticsearch.helpers.streaming_bulk` (``create`` actions: data streams
accept nothing else).

Failures, and what happens to the lines:

- queue full (Elasticsearch slower than the application logs): the new line is dropped;
- a whole request refused with a status in ``retry_on_status`` (429 by default, also
  502/503/504), or a transport error (connection refused, timeout): the batch is sent
  again after a backoff (``initial_backoff`` doubling up to ``max_backoff``), at most
  ``max_retries`` times, then dropped;
- ``errors: true`` with per-item statuses: items with a status in ``retry_on_status``
  are retried as above, the others (400 mapping errors, ...) are dropped at once.

Every dropped line is counted in :attr:`ElasticsearchSink.dropped` and, given an
``interlock`` instance, in ``interlock_log_records_dropped_total{sink="elasticsearch"}``.

The helper's own ``max_retries`` is left at 0 on purpose: it sleeps with ``time.sleep``
(a shutdown could not cut the wait short), it does not retry transport errors, and with
it the results no longer come back in request order. Without it, result *i* belongs to
line *i*, so after a transport error exactly the unanswered lines are sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

DATA_STREAM = "logs-interlock-default"
RETRY_ON_STATUS = (429, 502, 503, 504)
REFUSAL_REPORT_INTERVAL = 60.0  # seconds between warnings about refused lines

logger = logging.getLogger("interlock.logs")


def _item(info: Any) -> dict[str, Any]:
    """The item of one ``streaming_bulk`` result (``{op_type: {..., "status": n}}``)."""
    if isinstance(info, dict):
        for item in info.values():
            if isinstance(item, dict):
                return item
    return {}


def _status(info: Any) -> int:
    status = _item(info).get("status")
    return status if isinstance(status, int) else 500


def _reason(info: Any) -> str:
    """``status type: reason`` of a failed item, for the log."""
    item = _item(info)
    error = item.get("error")
    if isinstance(error, dict):
        error = f"{error.get('type')}: {error.get('reason')}"
    return f"{item.get('status')} {str(error)[:300]}"


class ElasticsearchSink:
    """Indexes formatted log lines into an Elasticsearch data stream, never blocking.

    Use it through :func:`interlock.logs.configure_logging` (``elasticsearch=...``), or
    attach it yourself: ``QueueingHandler(ElasticsearchSink(url))`` with an
    :class:`~interlock.logs.EcsJsonFormatter`.

    Args:
        client: an ``elasticsearch.Elasticsearch`` client, or the URL of a node (a client
            is then built with the client's own retries off: this sink retries).
        index: the data stream (or index) written with ``create`` actions.
        interlock: an ``Interlock``/``AsyncInterlock`` whose
            ``interlock_log_records_dropped_total{sink="elasticsearch"}`` counts drops.
        queue_size: lines waiting at most; further lines are dropped and counted.
        batch_size: lines per bulk request at most.
        flush_interval: seconds a line may wait for a batch to fill.
        max_retries: times a batch (or the failed part of it) is sent again.
        initial_backoff: seconds before the first retry; doubles on each retry.
        max_backoff: upper bound of the wait between retries.
        retry_on_status: statuses (whole request or item) that are retried.
        request_timeout: seconds per bulk request (for a client built from a URL).
        max_chunk_bytes: bytes per bulk request at most (the helper splits larger).
        close_timeout: seconds :meth:`stop` keeps sending what is queued; lines still
            unsent then are dropped and counted.

    Attributes:
        sent: lines Elasticsearch accepted. ``dropped``: lines given up (counted).
        retried: lines sent more than once.
    """

    def __init__(
        self,
        client: Elasticsearch | str,
        *,
        index: str = DATA_STREAM,
        interlock: Any = None,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_retries: int = 5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        retry_on_status: Collection[int] = RETRY_ON_STATUS,
        request_timeout: float = 10.0,
        max_chunk_bytes: int = 10 * 1024 * 1024,
        close_timeout: float = 5.0,
    ) -> None:
        for name, count in (("queue_size", queue_size), ("batch_size", batch_size)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{name}={count!r} must be an integer >= 1")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries={max_retries!r} must be an integer >= 0")
        for name, seconds in (
            ("flush_interval", flush_interval),
            ("initial_backoff", initial_backoff),
            ("max_backoff", max_backoff),
            ("request_timeout", request_timeout),
            ("close_timeout", close_timeout),
        ):
            if not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
                raise ValueError(f"{name}={seconds!r} must be a positive number of seconds")
        if not index or not isinstance(index, str):
            raise ValueError(f"index={index!r} must name a data stream, e.g. {DATA_STREAM!r}")
        if isinstance(client, str):
            from elasticsearch import Elasticsearch

            client = Elasticsearch(
                client, max_retries=0, retry_on_timeout=False, request_timeout=request_timeout
            )
        self.client = client
        self.index = index
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self.max_retries = max_retries
        self.initial_backoff = float(initial_backoff)
        self.max_backoff = float(max_backoff)
        self.retry_on_status = frozenset(retry_on_status)
        self.max_chunk_bytes = max_chunk_bytes
        self.close_timeout = float(close_timeout)
        self.sent = 0
        self.dropped = 0
        self.retried = 0
        self._counter = None
        if interlock is not None:
            self._counter = interlock.metrics.log_dropped.labels(sink="elasticsearch")
        self._drop_lock = threading.Lock()
        self._action = {"create": {"_index": index}}
        self._lines: deque[str] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")  # set by stop(): when unsent lines are given up
        self._deadline_set = threading.Condition()
        self._failing = False
        self._refusal_reported = -REFUSAL_REPORT_INTERVAL
        self.thread = threading.Thread(
            target=self._run, name="interlock-log-elasticsearch", daemon=True
        )
        self.thread.start()

    # -- the caller's side: never blocks -------------------------------------------------

    def put(self, line: str) -> None:
        """Queue one JSON line; drop (and count) it when the queue is full."""
        if threading.get_ident() == self.thread.ident:
            return  # the client's own log records about our requests: no feedback loop
        lines = self._lines
        if len(lines) >= self.queue_size:
            self._drop(1)
            return
        lines.append(line)
        if len(lines) == self.batch_size:
            self._wake.set()

    def stop(self) -> None:
        """Send what is queued (for at most ``close_timeout`` seconds), end the thread."""
        with self._deadline_set:
            self._deadline = time.monotonic() + self.close_timeout
            self._deadline_set.notify_all()
        self._stop.set()
        self._wake.set()
        self.thread.join(self.close_timeout + 1.0)

    # -- the worker -------------------------------------------------------------------

    def _drop(self, count: int) -> None:
        with self._drop_lock:  # callers (queue full) and the worker both drop
            self.dropped += count
        if self._counter is not None:
            self._counter.inc(count)

    def _run(self) -> None:
        lines, wake = self._lines, self._wake
        while True:
            wake.wait(self.flush_interval)
            wake.clear()
            stopping = self._stop.is_set()
            while lines:
                batch: list[str] = []
                while lines and len(batch) < self.batch_size:
                    batch.append(lines.popleft())
                if time.monotonic() >= self._deadline:
                    self._drop(len(batch))  # shutting down and out of time
                    continue
                try:
                    self._send(batch)
                except Exception:  # a bug or an odd client must not kill the thread
                    logger.exception("elasticsearch log sink: batch lost")
                    self._drop(len(batch))
                if not stopping and len(lines) < self.batch_size:
                    break  # let the next batch fill for a while
            if stopping:
                return

    def _send(self, batch: list[str]) -> None:
        """Index ``batch``, retrying what Elasticsearch did not take, with backoff."""
        pending = batch
        attempt = 0
        while True:
            results, error = self._bulk(pending)
            retry: list[str] = []
            refused: list[Any] = []
            for line, (ok, info) in zip(pending, results, strict=False):
                if ok:
                    self.sent += 1
                elif _status(info) in self.retry_on_status:
                    retry.append(line)
                else:
                    refused.append(info)  # for good: a mapping error, ...
            retry.extend(pending[len(results) :])  # unanswered: the transport failed
            if refused:
                self._drop(len(refused))
                self._report_refused(refused)
            self._report(error, len(retry))
            if not retry:
                return
            if attempt >= self.max_retries:
                self._drop(len(retry))
                return
            attempt += 1
            if not self._pause(min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))):
                self._drop(len(retry))  # shutting down: no time for another round
                return
            self.retried += len(retry)
            pending = retry

    def _pause(self, delay: float) -> bool:
        """Wait ``delay`` seconds; ``False`` at once if :meth:`stop`'s deadline comes first."""
        until = time.monotonic() + delay
        with self._deadline_set:
            while until < self._deadline:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return True
                self._deadline_set.wait(remaining)
        return False

    def _bulk(self, lines: list[str]) -> tuple[list[tuple[bool, Any]], Exception | None]:
        """One round of ``streaming_bulk``: per-line results in order, and the transport
        error that cut it short, if any."""
        from elastic_transport import TransportError
        from elasticsearch.helpers import streaming_bulk

        results: list[tuple[bool, Any]] = []
        try:
            for result in streaming_bulk(
                self.client,
                lines,
                chunk_size=len(lines),
                max_chunk_bytes=self.max_chunk_bytes,
                expand_action_callback=self._expand,
                raise_on_error=False,  # failed items come back as (False, info)
                raise_on_exception=False,  # so does a refused request (429, 503, ...)
                max_retries=0,
                yield_ok=True,
            ):
                results.append(result)
        except TransportError as exc:
            return results, exc
        return results, None

    def _expand(self, line: Any) -> tuple[dict[str, Any], Any]:
        return self._action, line

    def _report_refused(self, refused: list[Any]) -> None:
        now = time.monotonic()
        if now - self._refusal_reported >= REFUSAL_REPORT_INTERVAL:
            self._refusal_reported = now
            logger.warning(
                "elasticsearch log sink: %s refused %d line(s), dropped: %s",
                self.index,
                len(refused),
                _reason(refused[0]),
                extra={"event.action": "log-sink-refused"},
            )

    def _report(self, error: Exception | None, failed: int) -> None:
        """One warning when shipping starts failing, one line when it works again."""
        if error is not None or failed:
            if not self._failing:
                self._failing = True
                reason = f"{type(error).__name__}: {error}" if error else f"{failed} refused"
                logger.warning(
                    "elasticsearch log sink: cannot index into %s (%s); retrying with "
                    "backoff, dropping what cannot wait",
                    self.index,
                    reason,
                    extra={"event.action": "log-sink-failing"},
                )
        elif self._failing:
            self._failing = False
            logger.info(
                "elasticsearch log sink: indexing into %s again",
                self.index,
                extra={"event.action": "log-sink-recovered"},
            )
