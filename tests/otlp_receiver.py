"""A real OTLP/HTTP trace receiver for the tests: an HTTP server on a free local port that takes
protobuf POSTs on ``/v1/traces``, decodes them and keeps the spans (as OTLP defines them, not
as axmon built them). ``fail_next`` answers the next requests with 503, as a busy collector does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@dataclass
class Received:
    requests: int = 0
    refused: int = 0
    spans: list[Span] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_id(self) -> dict[bytes, Span]:
        """The last span received of each span id."""
        with self.lock:
            return {s.span_id: s for s in self.spans}

    def wait_for(self, count: int, timeout: float = 30.0) -> dict[bytes, Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.by_id()
            if len(spans) >= count:
                return spans
            time.sleep(0.1)
        raise AssertionError(f"received {len(self.by_id())} distinct spans, wanted {count}")


def attributes(span: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in span.attributes}


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, Received]]:
    """``(base URL, what was received)`` while the server runs."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with received.lock:
                if received.fail_next > 0:
                    received.fail_next -= 1
                    received.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with received.lock:
                received.requests += 1
                received.headers.append(dict(self.headers.items()))
                for rs in request.resource_spans:
                    received.resources.append(attributes(rs.resource))
                    for ss in rs.scope_spans:
                        received.spans.extend(ss.spans)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
