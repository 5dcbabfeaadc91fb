"""The telemetry process's two HTTP servers: Zipkin's API, and the metrics Prometheus scrapes.

Both are the standard library's ThreadingHTTPServer (a thread per connection, like the control
plane's API in sandbox/api.py), speaking HTTP/1.1 with keep-alive, so each proxy posts its span
batches over one connection. Envoy's Zipkin tracer sends each batch with
`Transfer-Encoding: chunked` and no Content-Length (reference section 6.1), which http.server does
not decode by itself: read_body does, and also takes a Content-Length body, gzip-encoded or not.
A framework such as werkzeug decodes chunked bodies too, but costs about four times as much CPU
per request, and the proxies post a few hundred batches a second under load.

Zipkin's API (https://zipkin.io/zipkin-api/), the parts the sandbox serves:

    POST /api/v2/spans                   a JSON list of v2 spans: 202, or 400 saying what is wrong
    GET  /api/v2/traces                  serviceName, spanName, remoteServiceName,
                                         annotationQuery, minDuration, maxDuration, endTs,
                                         lookback, limit: matching traces, newest first
    GET  /api/v2/trace/{traceId}         one trace (404 if unknown)
    GET  /api/v2/services                service names
    GET  /api/v2/spans?serviceName=      span names of a service
    GET  /api/v2/remoteServices?serviceName=
    GET  /api/v2/dependencies?endTs=&lookback=
    GET  /health                         {"status": "UP", "zipkin": {counts}}
    GET  /metrics, /prometheus           the collector's own counters, for Prometheus

The metrics server: GET /stats/prometheus (where istio-proxy serves them) and /metrics, and
/health with what the access log counter has read.
"""

from __future__ import annotations

import errno
import gzip
import json
import threading
import zlib
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, ClassVar
from urllib.parse import parse_qsl, urlsplit

from . import zipkin
from .counter import AccessLogCounter
from .metrics import RequestMetrics
from .spans import SpanStore
from .zipkin import TraceQuery

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024  # a span batch larger than this is refused (413)
MAX_LINE = 65536  # a chunk-size line longer than this is not HTTP
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"

# A GET handler takes the query parameters and answers (status, body, content type).
Answer = tuple[int, bytes, str]
GetHandler = Callable[[Mapping[str, str]], Answer]


class PortInUse(OSError):
    """The port a server should listen on is taken."""


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a proxy's open keep-alive connection must not delay shutdown

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def listen(port: int, handler: type[BaseHTTPRequestHandler]) -> Server:
    """A threaded server for `handler` on 127.0.0.1:`port` (0: any free port), bound but not yet
    serving; PortInUse when the port is taken."""
    try:
        return Server((HOST, port), handler)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PortInUse(error.errno, f"port {port} on {HOST} is already in use") from None
        raise


def read_body(headers: Mapping[str, str], stream: BinaryIO, limit: int = MAX_BODY) -> bytes:
    """The request body, whichever way it was framed: chunked (as Envoy sends spans) or with a
    Content-Length; gzip-encoded bodies are decoded. HttpError 400/411/413 otherwise."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        body = _read_chunked(stream, limit)
    else:
        length = headers.get("Content-Length")
        if length is None:
            raise HttpError(411, "send the body with Content-Length or Transfer-Encoding: chunked")
        if not length.isdigit():
            raise HttpError(400, f"Content-Length is not a number: {length!r}")
        if int(length) > limit:
            raise HttpError(413, f"the body is larger than {limit} bytes")
        body = stream.read(int(length))
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise HttpError(400, f"unsupported Content-Encoding {encoding!r}: send identity or gzip")
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as error:
        raise HttpError(400, f"the body is not valid gzip: {error}") from None


def _read_chunked(stream: BinaryIO, limit: int) -> bytes:
    """RFC 9112 chunked framing: hex size, CRLF, data, CRLF, ... a zero size, trailers, CRLF."""
    chunks, size = [], 0
    while True:
        line = stream.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise HttpError(400, "the chunked body ended early")
        try:
            length = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError(400, f"malformed chunk size {line[:40]!r}") from None
        if length == 0:
            while stream.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields: none that matter here
            return b"".join(chunks)
        size += length
        if size > limit:
            raise HttpError(413, f"the body is larger than {limit} bytes")
        chunk = stream.read(length)
        if len(chunk) != length or stream.readline(MAX_LINE) not in (b"\r\n", b"\n"):
            raise HttpError(400, "the chunked body ended early")
        chunks.append(chunk)


class Handler(BaseHTTPRequestHandler):
    """The shared part: HTTP/1.1, routing by path, errors as short text answers."""

    protocol_version = "HTTP/1.1"
    server_version = "istiolab-telemetry"
    get_routes: ClassVar[dict[str, GetHandler]] = {}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        try:
            handler = self.get_routes.get(parts.path)
            if handler is None:
                self.answer(*self.get_other(parts.path, query))
            else:
                self.answer(*handler(query))
        except HttpError as error:
            self.answer(error.status, _text(error.message), TEXT)
        except ValueError as error:
            self.answer(400, _text(str(error)), TEXT)

    def get_other(self, path: str, query: Mapping[str, str]) -> Answer:
        raise HttpError(404, f"no such path: {path}")

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request: the proxies post several times a second


# Zipkin


class ZipkinCollector:
    """Zipkin's HTTP API over a SpanStore: `handler()` is the request handler class to serve."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.messages = 0  # POSTs accepted
        self.rejected_messages = 0  # POSTs refused (malformed)
        self.bytes = 0
        self.get_routes: dict[str, GetHandler] = {
            "/api/v2/traces": self.traces,
            "/api/v2/services": self.services,
            "/api/v2/spans": self.span_names,
            "/api/v2/remoteServices": self.remote_services,
            "/api/v2/dependencies": self.dependencies,
            "/health": self.health,
            "/metrics": self.metrics,
            "/prometheus": self.metrics,
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        collector = self

        class ZipkinHandler(Handler):
            get_routes: ClassVar[dict[str, GetHandler]] = collector.get_routes

            def get_other(self, path: str, query: Mapping[str, str]) -> Answer:
                prefix = "/api/v2/trace/"
                if path.startswith(prefix) and len(path) > len(prefix):
                    return collector.trace(path[len(prefix) :])
                return super().get_other(path, query)

            def do_POST(self) -> None:
                if urlsplit(self.path).path != "/api/v2/spans":
                    self.close_connection = True  # its body was not read
                    self.answer(404, _text(f"no such path: {self.path}"), TEXT)
                    return
                try:
                    status, message = collector.post_spans(self.headers, self.rfile)
                except HttpError as error:
                    # The body may not have been read to its end: the connection cannot be reused.
                    self.close_connection = True
                    status, message = error.status, error.message
                self.answer(status, _text(message) if message else b"", TEXT)

        return ZipkinHandler

    def post_spans(self, headers: Mapping[str, str], stream: BinaryIO) -> tuple[int, str]:
        """Read, check and store one batch: (202, "") or (400, what is wrong)."""
        body = read_body(headers, stream)
        try:
            spans = zipkin.parse_spans(body)
        except ValueError as error:
            with self._lock:
                self.rejected_messages += 1
                self.bytes += len(body)
            return 400, str(error)
        self.store.add(spans)
        with self._lock:
            self.messages += 1
            self.bytes += len(body)
        return 202, ""

    def traces(self, query: Mapping[str, str]) -> Answer:
        return _json(self.store.traces(TraceQuery.from_args(query)))

    def trace(self, trace_id: str) -> Answer:
        spans = self.store.trace(trace_id)
        if spans is None:
            raise HttpError(404, f"traceId {trace_id} not found")
        return _json(spans)

    def services(self, query: Mapping[str, str]) -> Answer:
        return _json(self.store.service_names())

    def span_names(self, query: Mapping[str, str]) -> Answer:
        return _json(self.store.span_names(_required(query, "serviceName")))

    def remote_services(self, query: Mapping[str, str]) -> Answer:
        return _json(self.store.remote_service_names(_required(query, "serviceName")))

    def dependencies(self, query: Mapping[str, str]) -> Answer:
        window = TraceQuery.from_args({key: query.get(key, "") for key in ("endTs", "lookback")})
        return _json(self.store.dependencies(window.end_ts, window.lookback))

    def health(self, query: Mapping[str, str]) -> Answer:
        return _json({"status": "UP", "zipkin": self.stats()})

    def stats(self) -> dict[str, int]:
        with self._lock:
            counts = {
                "messages": self.messages,
                "rejected_messages": self.rejected_messages,
                "bytes": self.bytes,
            }
        return {**self.store.stats(), **counts}

    def metrics(self, query: Mapping[str, str]) -> Answer:
        """The collector's counters, named like Zipkin server's own metrics."""
        stats = self.stats()
        lines = [
            ("zipkin_collector_messages_total", "counter", stats["messages"]),
            ("zipkin_collector_messages_dropped_total", "counter", stats["rejected_messages"]),
            ("zipkin_collector_bytes_total", "counter", stats["bytes"]),
            ("zipkin_collector_spans_total", "counter", stats["received_spans"]),
            ("istiolab_zipkin_spans_evicted_total", "counter", stats["evicted_spans"]),
            ("istiolab_zipkin_spans_stored", "gauge", stats["spans"]),
            ("istiolab_zipkin_traces_stored", "gauge", stats["traces"]),
        ]
        text = "".join(f"# TYPE {name} {kind}\n{name} {value}\n" for name, kind, value in lines)
        return 200, text.encode(), PROMETHEUS_TEXT


# Metrics


def metrics_handler(
    metrics: RequestMetrics, counter: AccessLogCounter | None = None
) -> type[BaseHTTPRequestHandler]:
    """The request handler class serving Istio's request metrics in Prometheus' text format."""

    def exposition(query: Mapping[str, str]) -> Answer:
        return 200, metrics.exposition(), PROMETHEUS_TEXT

    def health(query: Mapping[str, str]) -> Answer:
        return _json({"status": "UP", "access_logs": counter.stats() if counter else {}})

    class MetricsHandler(Handler):
        get_routes: ClassVar[dict[str, GetHandler]] = {
            "/stats/prometheus": exposition,
            "/metrics": exposition,
            "/health": health,
        }

    return MetricsHandler


def _required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise HttpError(400, f"the {name} parameter is required")
    return value


def _json(document: Any) -> Answer:
    return 200, json.dumps(document, separators=(",", ":")).encode(), JSON


def _text(message: str) -> bytes:
    return (message.rstrip("\n") + "\n").encode()
