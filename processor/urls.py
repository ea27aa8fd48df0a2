"""Webhook URLs: which strings can be one, and how to show one in logs. Pure; used by the
settings (to validate ``--webhook``) and by notify (to deliver and to log). And the database's
location: a SQLite file's path or a PostgreSQL URL (``--db``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from processor.errors import ConfigError


def check_webhook_url(url: str) -> str:
    """``url`` if it can be a webhook (``http``/``https`` with a host), else :class:`ConfigError`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"webhook {display_url(url)!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook {display_url(url)!r} is not an http:// or https:// URL with a host")
    return url


def display_url(url: str) -> str:
    """``url`` for logs: without the password of ``user:password@`` (query strings stay)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


POSTGRES_SCHEMES = ("postgresql://", "postgres://")

DbLocation = Path | str
"""Where the database is: a SQLite file (a ``Path``) or a PostgreSQL URL (a ``str`` starting
with one of :data:`POSTGRES_SCHEMES`), as :func:`db_location` makes them."""


def db_location(value: str | Path) -> DbLocation:
    """``value`` (a ``--db`` flag or ``AXMON_DB``) as a :data:`DbLocation`: a PostgreSQL URL
    stays a string, anything else is a path."""
    if isinstance(value, str) and value.startswith(POSTGRES_SCHEMES):
        return value
    return Path(value)


def is_postgres(location: DbLocation) -> bool:
    """Whether ``location`` names a PostgreSQL database (else it is a SQLite file)."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)
