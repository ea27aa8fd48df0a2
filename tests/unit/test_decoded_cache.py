"""DecodedCache: a decoded value is returned only for the very object it was kept with."""

from __future__ import annotations

from processor.folds.decoded import DecodedCache


def test_only_the_same_object_returns_what_was_kept() -> None:
    cache: DecodedCache[str] = DecodedCache(limit=10)
    stored = b'{"a": 1}'
    equal_but_other = bytes(bytearray(stored))
    cache.keep("k", stored, "decoded")
    assert cache.get("k", stored) == "decoded"
    assert cache.get("k", equal_but_other) is None  # identity, not equality
    assert cache.get("other", stored) is None


def test_a_newer_object_replaces_the_older_and_forget_drops_it() -> None:
    cache: DecodedCache[int] = DecodedCache(limit=10)
    old, new = {"v": 1}, {"v": 2}
    cache.keep("k", old, 1)
    cache.keep("k", new, 2)
    assert cache.get("k", old) is None
    assert cache.get("k", new) == 2
    cache.forget("k")
    assert cache.get("k", new) is None


def test_it_holds_at_most_its_limit_of_keys() -> None:
    cache: DecodedCache[int] = DecodedCache(limit=3)
    values = [object() for _ in range(7)]
    for i, value in enumerate(values):
        cache.keep(f"k{i}", value, i)
        assert len(cache) <= 3
    assert cache.get("k6", values[6]) == 6
