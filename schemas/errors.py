"""The root of every exception axmon raises on purpose.

Each subclass says what went wrong in terms an operator can act on. Bad input is never an
exception that escapes a stream: the decoder raises :class:`InvalidEvent`, the caller turns it
into a dead letter.
"""

from __future__ import annotations


class AxmonError(Exception):
    """Root of all axmon errors."""


class InvalidEvent(AxmonError):
    """Bytes or a mapping that are not a valid event of the contract.

    ``reason`` is a short stable code (``undecodable``, ``not_an_object``, ``unknown_type``,
    ``unknown_version``, ``missing_field``, ``invalid_field``, ``out_of_range``, ``too_large``,
    ``too_deep``, ``unencodable``); ``detail`` says what exactly. The limits are in
    :mod:`schemas.limits`.
    """

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field
