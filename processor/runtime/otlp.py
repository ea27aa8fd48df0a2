"""OTLP/HTTP with protobuf: :class:`~processor.folds.spans.Span` records on the wire.

:func:`encode_traces` is pure (spans in, ``ExportTraceServiceRequest`` bytes out);
:class:`OtlpClient` POSTs them to ``/v1/traces``. The protobuf classes come from
``opentelemetry-proto``, not the SDK: the SDK makes spans as code runs, with random ids and the
clock's times, while axmon reconstructs finished ones with derived ids and event times, and must
know that a batch was accepted before it commits its Kafka offsets (the SDK's batch processor
exports in a background thread and drops on overflow).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

from processor.errors import AxmonError, ConfigError
from processor.folds.spans import Attributes, Span

TRACES_PATH = "/v1/traces"
CONTENT_TYPE = "application/x-protobuf"
SCOPE_NAME = "axmon"


class ExportError(AxmonError):
    """The OTLP receiver refused a batch or could not be reached; ``retriable`` says whether
    sending the same batch again may help (OTLP/HTTP: 429, 502, 503, 504 and network errors)."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


def traces_url(url: str) -> str:
    """The endpoint to POST to: ``url`` as given when it has a path, else ``url/v1/traces``
    (like ``OTEL_EXPORTER_OTLP_ENDPOINT`` versus ``..._TRACES_ENDPOINT``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--otlp wants an http(s) URL such as http://localhost:4318, not {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=TRACES_PATH)
    return urlunsplit(parts)


def _value(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _key_values(attributes: Attributes) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attributes]


def to_proto(span: Span) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id or b"",
        name=span.name,
        kind=trace_pb2.Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns,
        attributes=_key_values(span.attributes),
        events=[
            trace_pb2.Span.Event(time_unix_nano=e.time_ns, name=e.name, attributes=_key_values(e.attributes))
            for e in span.events
        ],
        links=[
            trace_pb2.Span.Link(trace_id=link.trace_id, span_id=link.span_id, attributes=_key_values(link.attributes))
            for link in span.links
        ],
        status=trace_pb2.Status(code=span.status_code, message=span.status_message),  # type: ignore[arg-type]
    )


def encode_traces(spans: Iterable[Span], *, service_name: str = "axmon", scope_version: str = "") -> bytes:
    """One ``ExportTraceServiceRequest``: one resource (``service.name``), one scope, the spans
    in the order given."""
    request = ExportTraceServiceRequest(resource_spans=[
        trace_pb2.ResourceSpans(
            resource=Resource(attributes=_key_values((("service.name", service_name),))),
            scope_spans=[trace_pb2.ScopeSpans(
                scope=InstrumentationScope(name=SCOPE_NAME, version=scope_version),
                spans=[to_proto(s) for s in spans],
            )],
        )
    ])
    return request.SerializeToString()


_RETRIABLE = frozenset({429, 502, 503, 504})


class OtlpClient:
    """POSTs encoded batches to one OTLP/HTTP endpoint. Use as an async context manager."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> None:
        self.url = traces_url(url)
        self._headers = {"Content-Type": CONTENT_TYPE, **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OtlpClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, body: bytes) -> None:
        """One POST; raises :class:`ExportError` unless the receiver answers 2xx."""
        if self._session is None:
            raise RuntimeError("OtlpClient is used outside 'async with'")
        try:
            async with self._session.post(self.url, data=body, headers=self._headers) as response:
                if 200 <= response.status < 300:
                    await response.read()
                    return
                text = (await response.text(errors="replace"))[:200]
                raise ExportError(f"{self.url} answered {response.status}: {text}",
                                  retriable=response.status in _RETRIABLE)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ExportError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}", retriable=True) from exc

    async def send_with_retry(self, body: bytes, *, attempts: int = 5, first_delay_s: float = 0.5,
                              stop: asyncio.Event | None = None) -> None:
        """:meth:`send`, again after a retriable failure with doubling delays (``attempts``
        in all; ``0`` means until ``stop`` is set)."""
        delay, tried = first_delay_s, 0
        while True:
            tried += 1
            try:
                await self.send(body)
                return
            except ExportError as exc:
                if not exc.retriable or (attempts and tried >= attempts) or (stop is not None and stop.is_set()):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
