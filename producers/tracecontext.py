"""The current OpenTelemetry span's W3C ids, when ``opentelemetry-api`` is installed.

The SDK stamps lifecycle events with them (``trace_id``/``span_id``), so that axmon's spans of
an execution join the engine's own trace. Without the package, or outside a recording span,
there is no context and the events carry none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TraceContext = tuple[str, str]
"""``(trace_id, span_id)``: 32 and 16 lowercase hex digits."""

_get_current_span: Callable[[], Any] | None = None
_looked = False


def _api() -> Callable[[], Any] | None:
    global _get_current_span, _looked
    if not _looked:
        _looked = True
        try:
            from opentelemetry.trace import get_current_span
        except ImportError:
            _get_current_span = None
        else:
            _get_current_span = get_current_span
    return _get_current_span


def current_trace_context() -> TraceContext | None:
    """The current span's ``(trace_id, span_id)``, or ``None`` (no API package, no valid span)."""
    get_current_span = _api()
    if get_current_span is None:
        return None
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
