"""``GET /metrics``: the Prometheus exposition of ``axmon serve`` (admins only when keys are set)."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from processor.runtime.metrics_collectors import ServeMetrics
from processor.serve.auth import ApiError
from processor.serve.deps import Caller, Config

router = APIRouter()
_lock = threading.Lock()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, caller: Caller, config: Config) -> Response:
    if not caller.admin:
        raise ApiError(403, "forbidden", "the metrics cover every tenant: an admin key reads them")
    with _lock:  # one exporter (and one lag thread) per app, made at the first scrape
        exporter: ServeMetrics | None = getattr(request.app.state, "metrics", None)
        if exporter is None:
            exporter = request.app.state.metrics = ServeMetrics(config.db_path, config.topics, config.bootstrap)
    return Response(exporter.scrape(), media_type=CONTENT_TYPE_LATEST)
