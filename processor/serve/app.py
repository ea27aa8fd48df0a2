"""The ASGI application: configuration, the caller's identity, JSON errors, the static dashboard."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from processor.errors import ConfigError
from processor.serve.auth import ApiError, StreamTokens
from processor.serve.deps import ServeConfig
from processor.store.db import DatabaseError


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "code": code}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message, exc.field)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    field = ".".join(loc) or None
    return _error(422, "invalid_parameter", f"{field or 'request'}: {first.get('msg', 'invalid')}", field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


async def _config_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(422, "invalid_parameter", str(exc))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    return _error(503, "database_unavailable", str(exc))


STATIC = resources.files("processor.serve") / "static"


def create_app(config: ServeConfig) -> FastAPI:
    from processor.serve.metrics import router as metrics_router
    from processor.serve.routes import router
    from processor.serve.sse import Journal

    app = FastAPI(title="axmon monitoring API", version="1", description="Read-only API over the axmon sink's database.")
    app.state.config = config
    app.state.journal = Journal(config.db_path)
    app.state.tokens = StreamTokens()
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ConfigError, _config_error)
    app.add_exception_handler(DatabaseError, _database_error)
    app.include_router(router, prefix="/api/v1")
    app.include_router(metrics_router)
    static_dir = Path(str(STATIC))
    app.mount("/static", StaticFiles(directory=static_dir), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    return app
