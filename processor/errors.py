"""Errors of the processor side, all under the one root :class:`schemas.errors.AxmonError`."""

from __future__ import annotations

from schemas.errors import AxmonError, InvalidEvent

__all__ = ["AxmonError", "InvalidEvent", "ConfigError", "MissingToolError", "BrokerError"]


class ConfigError(AxmonError):
    """A setting (flag, environment variable or file) has a value that cannot be used."""


class MissingToolError(AxmonError):
    """A program the local broker needs (Java 17+, Maven) is not installed."""


class BrokerError(AxmonError):
    """The Kafka broker could not be provisioned, started, reached or stopped."""
