"""Webhook URLs: which strings can be one, and how to show one in logs. Pure; used by the
settings (to validate ``--webhook``) and by notify (to deliver and to log)."""

from __future__ import annotations

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
