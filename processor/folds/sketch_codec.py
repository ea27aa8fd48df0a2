"""The stored form of a :class:`~processor.folds.sketch.QuantileSketch`: compact bytes, decoded
and merged in one pass (the published form stays :meth:`QuantileSketch.to_json`). Pure.

Layout (integers are LEB128 varints; keys are zig-zag varints)::

    tag          1 byte: 0x01 (alpha is DEFAULT_RELATIVE_ACCURACY) or 0x02 (an 8-byte
                 little-endian double follows: alpha)
    zero         varint
    positive     store
    negative     store (magnitudes, as in the sketch)

    store        varint h: 0 = no buckets; else h >> 1 entries, h & 1 = dense
                 dense:  zig-zag varint: the first key; 1 byte w (1, 2, 4 or 8); then entries x w
                         bytes: the counts of the keys first .. first + entries - 1, unsigned
                         little-endian (zeros included)
                 sparse: 1 byte: key width (2 or 4) << 4 | count width (1, 2, 4 or 8); then the
                         entries' keys, increasing, signed little-endian; then their counts,
                         unsigned little-endian

Encoding picks the smaller of dense and sparse per store, so a minute window of a few samples
takes ~10 bytes and a day of a busy series a byte or two per bucket. :func:`merge_encoded` adds
dense stores as 64-bit lanes of one Python integer (the additions run in C), sparse ones into a
dict: the result is exactly :meth:`QuantileSketch.merge` folded over :func:`decode` (buckets left
empty are dropped). An empty byte string stands for an empty sketch of the default accuracy
(a tier row that merged nothing).
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from processor.folds.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch

_DEFAULT = 0x01
_EXPLICIT = 0x02
_LANE = 64
_MAX_SPAN = 1 << 16
"""Keys a merge sums as lanes of one integer (real sketches span at most ~36,000: the keys of
values from 1e-9 to the float maximum at 1%); sketches whose keys lie further apart are added
piece by piece."""
_WIDTH_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_KEY_CODES = {2: "h", 4: "i"}
if any(array(code).itemsize != width for width, code in (*_WIDTH_CODES.items(), *_KEY_CODES.items())):  # pragma: no cover
    raise ImportError("the sketch codec needs array typecodes B, H, I, Q of 1, 2, 4, 8 bytes")
_SWAP = sys.byteorder == "big"


class SketchDecodeError(ValueError):
    """Bytes that are not an encoded sketch."""


def encode(sketch: QuantileSketch) -> bytes:
    """The compact bytes of ``sketch`` (see the module docstring)."""
    out = bytearray()
    if sketch.alpha == DEFAULT_RELATIVE_ACCURACY:
        out.append(_DEFAULT)
    else:
        out.append(_EXPLICIT)
        out += struct.pack("<d", sketch.alpha)
    _put_varint(out, sketch.zero)
    _put_store(out, sketch.positive)
    _put_store(out, sketch.negative)
    return bytes(out)


def decode(blob: bytes) -> QuantileSketch:
    """The sketch of :func:`encode`'s bytes (``b""``: an empty sketch)."""
    if not blob:
        return QuantileSketch()
    alpha, zero, at = _head(blob)
    positive: dict[int, int] = {}
    negative: dict[int, int] = {}
    at = _read_store(blob, at, positive, None)
    at = _read_store(blob, at, negative, None)
    if at != len(blob):
        raise SketchDecodeError(f"{len(blob) - at} bytes after the sketch")
    return QuantileSketch(alpha, positive, negative, zero)


def merge_encoded(blobs: Iterable[bytes | None]) -> QuantileSketch | None:
    """The merge of encoded sketches (``None`` or ``b""`` count as empty sketches of the default
    accuracy), ``None`` when there are none. Raises ``ValueError`` when their accuracies differ.

    Sketches of the default accuracy with a zero count below 128 (nearly all) are read without
    the general header parse; the shape of a window of a few positive samples (a sparse positive
    store of fewer than 64 entries, no negative store) is read inline, its keys and counts
    gathered into one array per width and summed in one loop at the end."""
    alpha: float | None = None
    zero = 0
    positive = _Lanes()
    negative = _Lanes()
    gathered: dict[int, tuple[array[int], array[int]]] = {}
    for blob in blobs:
        if blob and blob[0] == _DEFAULT and len(blob) > 3 and blob[1] < 0x80:
            if alpha != DEFAULT_RELATIVE_ACCURACY:
                alpha = _agreed(alpha, DEFAULT_RELATIVE_ACCURACY)
            h = blob[2]
            if 0 < h < 0x80 and not h & 1 and blob[-1] == 0:
                widths = blob[3]
                middle = 4 + (h >> 1) * (widths >> 4)
                pair = gathered.get(widths)
                if pair is None and widths >> 4 in _KEY_CODES and widths & 0xF in _WIDTH_CODES:
                    pair = gathered[widths] = (array(_KEY_CODES[widths >> 4]), array(_WIDTH_CODES[widths & 0xF]))
                if pair is not None and middle + (h >> 1) * (widths & 0xF) + 1 == len(blob):
                    zero += blob[1]
                    pair[0].frombytes(blob[4:middle])
                    pair[1].frombytes(blob[middle:-1])
                    continue
            zero += blob[1]
            at = _read_store(blob, 2, positive.sparse, positive)
        elif blob:
            row_alpha, row_zero, at = _head(blob)
            if row_alpha != alpha:
                alpha = _agreed(alpha, row_alpha)
            zero += row_zero
            at = _read_store(blob, at, positive.sparse, positive)
        else:
            if alpha != DEFAULT_RELATIVE_ACCURACY:
                alpha = _agreed(alpha, DEFAULT_RELATIVE_ACCURACY)
            continue
        if at == len(blob) - 1 and blob[at] == 0:  # no negative buckets
            continue
        at = _read_store(blob, at, negative.sparse, negative)
        if at != len(blob):
            raise SketchDecodeError(f"{len(blob) - at} bytes after the sketch")
    if alpha is None:
        return None
    into = positive.sparse
    get = into.get
    for keys, counts in gathered.values():
        if _SWAP:  # pragma: no cover - little-endian machines
            keys.byteswap()
            counts.byteswap()
        for key, count in zip(keys, counts):
            into[key] = get(key, 0) + count
    return QuantileSketch(alpha, positive.buckets(), negative.buckets(), zero)


def _agreed(alpha: float | None, row_alpha: float) -> float:
    """``row_alpha``, when it is the first accuracy seen (``alpha`` is ``None``)."""
    if alpha is not None and alpha != row_alpha:
        raise ValueError(f"sketches of different accuracy ({alpha}, {row_alpha}) cannot be merged")
    return row_alpha


class _Lanes:
    """Bucket counts being summed: dense runs kept as they are stored (summed at the end as
    64-bit lanes of one integer), sparse buckets in a dict."""

    __slots__ = ("bound", "pieces", "sparse")

    def __init__(self) -> None:
        self.pieces: list[tuple[int, int, int, bytes]] = []
        """``(first key, entries, width, counts as stored)``"""
        self.sparse: dict[int, int] = {}
        self.bound = 0
        """The largest sum a lane can reach (a lane must stay below 2^64)."""

    def add_dense(self, first: int, entries: int, width: int, payload: bytes) -> None:
        self.pieces.append((first, entries, width, payload))
        self.bound += (1 << (8 * width)) - 1

    def buckets(self) -> dict[int, int]:
        out = self.sparse
        if not self.pieces:
            return out
        runs: list[tuple[int, int, int]] = []
        by_width: dict[int, list[tuple[int, int, int, bytes]]] = {}
        for piece in self.pieces:
            by_width.setdefault(piece[2], []).append(piece)
        for width, group in by_width.items():  # widened to 8 bytes a count, once per width
            wide = array(_WIDTH_CODES[width], b"".join(p[3] for p in group))
            if _SWAP:  # pragma: no cover - little-endian machines
                wide.byteswap()
            lanes = array("Q", wide.tolist()) if width != 8 else wide
            if _SWAP:  # pragma: no cover
                lanes.byteswap()
            raw = lanes.tobytes()
            at = 0
            for first, entries, _, _ in group:
                runs.append((first, entries, int.from_bytes(raw[at:at + 8 * entries], "little")))
                at += 8 * entries
        base = min(r[0] for r in runs)
        top = max(r[0] + r[1] for r in runs)
        if self.bound >= 1 << _LANE or top - base > max(_MAX_SPAN, 4 * sum(r[1] for r in runs)):
            for first, entries, total in runs:  # counts that could carry, or keys far apart
                _add_lanes(out, first, entries, total)
            return out
        by_first: dict[int, int] = {}
        for first, _, total in runs:
            by_first[first] = by_first.get(first, 0) + total
        summed = 0
        for first, total in by_first.items():
            summed += total << (_LANE * (first - base))
        _add_lanes(out, base, top - base, summed)
        return out


def _add_lanes(out: dict[int, int], base: int, entries: int, lanes: int) -> None:
    """Add the ``entries`` 64-bit lanes of ``lanes`` (lane i: the count of key ``base + i``)."""
    counts = array("Q", lanes.to_bytes(8 * entries, "little"))
    if _SWAP:  # pragma: no cover - little-endian machines
        counts.byteswap()
    for i, count in enumerate(counts):
        if count:
            key = base + i
            out[key] = out.get(key, 0) + count


def _head(blob: bytes) -> tuple[float, int, int]:
    """``(alpha, zero, offset of the positive store)``."""
    if not isinstance(blob, bytes):
        raise SketchDecodeError(f"an encoded sketch is bytes, not {type(blob).__name__}")
    tag = blob[0]
    if tag == _DEFAULT:
        alpha, at = DEFAULT_RELATIVE_ACCURACY, 1
    elif tag == _EXPLICIT:
        if len(blob) < 9:
            raise SketchDecodeError("a sketch cut short in its accuracy")
        alpha, at = struct.unpack_from("<d", blob, 1)[0], 9
    else:
        raise SketchDecodeError(f"not an encoded sketch (tag {tag:#x})")
    zero, at = _get_varint(blob, at)
    return alpha, zero, at


def _read_store(blob: bytes, at: int, into: dict[int, int], lanes: _Lanes | None) -> int:
    """Read the store at ``at``: its buckets added to ``into`` (dense ones to ``lanes`` when
    given); returns the offset after it."""
    h, at = _get_varint(blob, at)
    if not h:
        return at
    entries = h >> 1
    if h & 1:
        z, at = _get_varint(blob, at)
        key = (z >> 1) ^ -(z & 1)
        width = blob[at] if at < len(blob) else 0
        code = _WIDTH_CODES.get(width)
        end = at + 1 + entries * width
        if code is None or end > len(blob):
            raise SketchDecodeError(f"a dense store of width {width} and {entries} entries does not fit")
        payload = blob[at + 1:end]
        if lanes is not None:
            lanes.add_dense(key, entries, width, payload)
            return end
        counts = array(code, payload)
        if _SWAP:  # pragma: no cover
            counts.byteswap()
        for i, count in enumerate(counts):
            if count:
                into[key + i] = into.get(key + i, 0) + count
        return end
    widths = blob[at] if at < len(blob) else 0
    key_code, count_code = _KEY_CODES.get(widths >> 4), _WIDTH_CODES.get(widths & 0xF)
    middle = at + 1 + entries * (widths >> 4)
    end = middle + entries * (widths & 0xF)
    if key_code is None or count_code is None or end > len(blob):
        raise SketchDecodeError(f"a sparse store of widths {widths:#x} and {entries} entries does not fit")
    keys = array(key_code, blob[at + 1:middle])
    counts = array(count_code, blob[middle:end])
    if _SWAP:  # pragma: no cover
        keys.byteswap()
        counts.byteswap()
    get = into.get
    for key, count in zip(keys, counts):
        into[key] = get(key, 0) + count
    return end


def _put_store(out: bytearray, buckets: Mapping[int, int]) -> None:
    keys = sorted(k for k, c in buckets.items() if c)
    _put_sorted(out, keys, [buckets[k] for k in keys])


def _put_sorted(out: bytearray, keys: Sequence[int], counts: Sequence[int]) -> None:
    """A store of ``keys`` (increasing) and their non-zero ``counts``."""
    if not keys:
        out.append(0)
        return
    first, last = keys[0], keys[-1]
    if not -(1 << 31) <= first <= last < 1 << 31:
        raise ValueError(f"a sketch key out of range: {first}, {last}")
    top = max(counts)
    if min(counts) < 0 or top >= 1 << 64:
        raise ValueError(f"a sketch count out of range: {top}")
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    key_width = 2 if -(1 << 15) <= first and last < 1 << 15 else 4
    span = last - first + 1
    if 2 + span * width < 1 + len(keys) * (key_width + width):
        dense = [0] * span
        for key, count in zip(keys, counts):
            dense[key - first] = count
        _put_varint(out, span << 1 | 1)
        _put_varint(out, (first << 1) ^ (first >> 63))
        out.append(width)
        parts = [array(_WIDTH_CODES[width], dense)]
    else:
        _put_varint(out, len(keys) << 1)
        out.append(key_width << 4 | width)
        parts = [array(_KEY_CODES[key_width], keys), array(_WIDTH_CODES[width], counts)]
    for part in parts:
        if _SWAP:  # pragma: no cover
            part.byteswap()
        out += part.tobytes()


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"a sketch count must not be negative: {value}")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_varint(blob: bytes, at: int) -> tuple[int, int]:
    try:
        byte = blob[at]
        if byte < 0x80:
            return byte, at + 1
        value, shift = byte & 0x7F, 7
        while True:
            at += 1
            byte = blob[at]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, at + 1
            shift += 7
            if shift > 70:
                raise SketchDecodeError("a varint longer than 10 bytes")
    except IndexError:
        raise SketchDecodeError("a sketch cut short") from None


def encode_json(data: Mapping[str, Any]) -> bytes:
    """The stored bytes of a sketch given in its published JSON form
    (:meth:`QuantileSketch.to_json`; ``{}`` is an empty sketch of the default accuracy): what
    ``encode(QuantileSketch.from_json(data))`` gives, read straight from the flat lists when
    their keys increase and their counts are positive integers (as the worker writes them)."""
    alpha = data.get("a", DEFAULT_RELATIVE_ACCURACY)
    zero = data.get("z", 0)
    stores = [data.get("p", ()), data.get("n", ())]
    if not (alpha == DEFAULT_RELATIVE_ACCURACY and type(zero) is int and zero >= 0
            and all(_plain_flat(flat) for flat in stores)):
        return encode(QuantileSketch.from_json(data))
    out = bytearray((_DEFAULT,))
    _put_varint(out, zero)
    for flat in stores:
        _put_sorted(out, flat[0::2], flat[1::2])
    return bytes(out)


def _plain_flat(flat: Any) -> bool:
    """Whether ``flat`` is a ``[key, count, ...]`` list of ints with increasing keys and positive
    counts (checked in C where it can be)."""
    if type(flat) is not list or len(flat) % 2:
        return flat == ()
    if not all(type(v) is int for v in flat):
        return False
    keys, counts = flat[0::2], flat[1::2]
    return (not counts or min(counts) > 0) and all(map(operator.lt, keys, keys[1:]))
