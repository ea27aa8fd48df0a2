"""What a stored value decodes to, kept beside the very object it was decoded from.

Stored values are never mutated (a write builds a new one), so while a store returns the same
object (the same bytes, the same entry) as the one decoded or written last, its decoded form is
still right and need not be decoded again; any other object (a rollback, a recovered table,
another writer) is decoded afresh. The objects are compared by identity, never by value."""

from __future__ import annotations

from typing import Generic, TypeVar

Decoded = TypeVar("Decoded")


class DecodedCache(Generic[Decoded]):
    """Key -> (the stored object, what it decodes to); at most ``limit`` keys (then all are
    forgotten at once: a batch or two's worth is what helps)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: dict[str, tuple[object, Decoded]] = {}

    def get(self, key: str, stored: object) -> Decoded | None:
        """What ``stored`` decodes to, if it is the very object last kept for ``key``."""
        known = self._kept.get(key)
        if known is not None and known[0] is stored:
            return known[1]
        return None

    def keep(self, key: str, stored: object, decoded: Decoded) -> None:
        if len(self._kept) >= self.limit:
            self._kept.clear()
        self._kept[key] = (stored, decoded)

    def forget(self, key: str) -> None:
        self._kept.pop(key, None)

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
