"""The contract's limits, in one place: the codec (and so the SDK, ``axmon produce`` and the
worker's decoder) and the JSON Schema files all read them from here.

Why these numbers:

- :data:`MAX_EVENT_BYTES`: an event's JSON must fit in one Kafka record with room to spare.
  The broker refuses records over its ``message.max.bytes`` (1,048,588 bytes by default, which
  the local broker keeps), and the worker must still be able to publish what it makes of an
  event: a dead letter carries the original bytes base64-encoded (4/3 of their size) and an
  execution's state carries its metadata. 512 KiB leaves that room.
- :data:`MAX_DEPTH`: orjson refuses to write JSON nested deeper than 254 levels, and the worker
  wraps an event's metadata a few levels deeper in its tables; 32 levels is far more than any
  metadata needs and far from that limit.
- :data:`MAX_ABS_VALUE`: sums of samples (a window's, an hour's, a query's) are IEEE doubles.
  With every value within +-1e15, a sum of n samples is within +-n * 1e15: finite for any n a
  topic can hold (2^63 samples sum to at most ~9.2e33, against a float maximum of ~1.8e308), so
  no sum becomes inf or NaN, and sums of whole values are exact while they stay below 2^53
  (~9.0e15). 1e15 covers every metric the design names (a petabyte in bytes, eleven days in
  nanoseconds). A sample outside it is rejected as ``out_of_range``, never clamped.
"""

from __future__ import annotations

MAX_EVENT_BYTES = 512 * 1024
"""An event's JSON encoding is at most this many bytes (the SDK, ``axmon produce`` and the
worker's decoder refuse larger ones as ``too_large``)."""

MAX_DEPTH = 32
"""JSON nesting of an event at most: the event object is level 1, its metadata's values level
2 and so on (deeper is ``too_deep``)."""

MAX_ABS_VALUE = 1e15
"""A metric sample's ``value`` and a step's ``cost`` are within ``[-1e15, 1e15]`` (cost >= 0);
outside is ``out_of_range``."""

MAX_ID_LENGTH = 128
"""Ids (event, execution, step, tenant, user, workflow) and metric types: 1 to 128 characters,
no control characters (U+0000-U+001F, U+007F)."""

ID_PATTERN = r"^[^\u0000-\u001f\u007f]+$"
"""An id has no control characters (they are reserved for the processor's own table keys)."""

MAX_LABELS = 64
"""A sample has at most this many labels."""

MAX_LABEL_NAME_LENGTH = 128
"""A label's name: 1 to 128 characters."""

MAX_LABEL_VALUE_LENGTH = 1024
"""A label's value: at most 1,024 characters."""

MAX_SAFE_INTEGER = 2**53 - 1
"""Counts and times are whole numbers up to this: larger integers do not survive a round trip
through JavaScript and many JSON parsers."""

MAX_STORED_INTEGER = 2**63 - 1
"""What an SQLite INTEGER column holds."""

MAX_RECORD_BYTES = 990_000
"""The largest record (key and value) axmon itself publishes or writes to a table's changelog:
below Faust's and aiokafka's ``max_request_size`` (1,000,000 and 1,048,576 bytes) and the
broker's ``message.max.bytes`` (1,048,588), with room for the record's own framing. A fold
that would make a larger one is a ``processing_error`` of the record that made it."""

TRACE_ID_PATTERN = r"^(?!0{32})[0-9a-f]{32}$"
"""A W3C Trace Context trace id: 32 lowercase hex digits, not all zero."""

SPAN_ID_PATTERN = r"^(?!0{16})[0-9a-f]{16}$"
"""A W3C Trace Context span id: 16 lowercase hex digits, not all zero."""
