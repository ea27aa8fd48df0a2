"""Times and durations on the command line. Pure.

A time is ``now``; a duration with a unit (``30s``, ``15m``, ``1h``, ``7d``, ``1h30m``) meaning
that long before now; a bare whole number, epoch ms; or ISO-8601 (local time without an offset).
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, tzinfo

from processor.errors import ConfigError

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)")


def parse_label(text: str) -> tuple[str, str]:
    """``key=value`` (the value may contain ``=``, the key may not be empty); an argparse type."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label filter is KEY=VALUE, not {text!r}")
    return key, value


def parse_duration_ms(text: str) -> int:
    """A positive duration: a number with a unit (``250ms``, ``30s``, ``15m`` or ``15min``,
    ``1h``, ``7d``, ``2w``), several summed (``1h30m``), or a bare whole number of ms."""
    spec = text.strip().lower()
    if spec.isdigit():
        total = float(spec)
    else:
        parts = _DURATION.findall(spec)
        if not parts or _DURATION.sub("", spec).strip():
            raise ConfigError(f"{text!r} is not a duration (e.g. 500ms, 30s, 15m, 1h, 7d)")
        total = sum(float(n) * _UNIT_MS[unit] for n, unit in parts)
    if total < 1:
        raise ConfigError(f"the duration {text!r} must be at least 1 ms")
    return int(total)


def is_relative(text: str) -> bool:
    """Whether a time argument is relative to now (a duration with a unit)."""
    spec = text.strip().lower()
    return not spec.isdigit() and bool(_DURATION.findall(spec)) and not _DURATION.sub("", spec).strip()


def parse_time_ms(text: str, now_ms: int, tz: tzinfo | None = None) -> int:
    """A point in time as epoch ms: ``now``; a duration with a unit (``30s``, ``15m``, ``1h``,
    ``7d``, ``1h30m``) meaning that long before ``now_ms``; a bare whole number, epoch ms; or
    ISO-8601 (``2025-11-10``, ``2025-11-10T14:30``, ``...Z``, ``...+01:00``), in ``tz`` (default:
    the local time zone) when it has no offset."""
    spec = text.strip()
    if spec.lower() == "now":
        return now_ms
    if spec.isdigit():
        return int(spec)
    if is_relative(spec):
        return now_ms - parse_duration_ms(spec)
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time: use now, a relative time (30s, 15m, 1h, 7d), ISO-8601 or epoch ms"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return int(moment.timestamp() * 1000)
