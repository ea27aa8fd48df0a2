"""Times on the command line: relative (``30s``, ``15m``, ``1h``, ``7d``: that long before now),
ISO-8601 (``2026-11-27T10:00:00Z``; local time without an offset), or epoch milliseconds."""

from __future__ import annotations

import re
from datetime import datetime

from processor.errors import ConfigError

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")


def parse_duration_ms(text: str) -> int:
    """``90s`` -> 90000; a bare number is milliseconds."""
    raw = text.strip().lower()
    if raw.isdigit():
        return int(raw)
    found = _RELATIVE.match(raw)
    if found is None:
        raise ConfigError(f"{text!r} is not a duration (like 500ms, 30s, 15m, 1h, 7d)")
    return int(float(found.group(1)) * _UNITS[found.group(2)])


def parse_time_ms(text: str, now_ms: int) -> int:
    """A point in time as epoch ms: relative to ``now_ms`` (``1h`` = an hour ago), ISO-8601,
    or epoch milliseconds (``now`` is accepted too)."""
    raw = text.strip()
    if raw.lower() == "now":
        return now_ms
    if raw.isdigit() and len(raw) >= 10:
        return int(raw)
    if _RELATIVE.match(raw.lower()):
        return now_ms - parse_duration_ms(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is not a time (like 1h, 7d, 2026-11-27T10:00:00Z or epoch ms)") from None
    return int(parsed.timestamp() * 1000)
