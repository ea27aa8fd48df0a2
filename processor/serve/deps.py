"""What every route of ``axmon serve`` depends on: the server's config and the caller
(FastAPI dependencies), apart from the app so that the routes need not import it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from processor.serve.auth import ADMIN, KeyRing, Principal, presented_key
from processor.urls import DbLocation
from schemas.topics import Topics


@dataclass(frozen=True, slots=True)
class ServeConfig:
    db_path: DbLocation
    topics: Topics
    keys: KeyRing | None = None
    """``None``: no keys, every caller is an admin (loopback only)."""
    bootstrap: str | None = None
    """The broker for acks and the Kafka part of health; ``None``: neither."""


def config_of(request: Request) -> ServeConfig:
    config: ServeConfig = request.app.state.config
    return config


def principal_of(
    request: Request,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    keys = config_of(request).keys
    return ADMIN if keys is None else keys.principal(presented_key(authorization, x_api_key))


Caller = Annotated[Principal, Depends(principal_of)]
Config = Annotated[ServeConfig, Depends(config_of)]
