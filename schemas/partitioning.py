"""Which partition a record's key belongs to: Kafka's default partitioner, part of the contract.

Every producer of the contract's topics (in any language) must send a record to the partition
its key hashes to with murmur2, as the Java client's default partitioner does; axmon folds a
record only on that home partition and forwards it there otherwise. Pure: no Kafka client
import, so the folds can use it.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``) of ``data``, as an
    unsigned 32-bit int. (Its 4-byte blocks unpacked at once: a third cheaper than one slice
    and ``int.from_bytes`` per block.)"""
    length = len(data)
    m, mask = _M, _MASK
    h = (_SEED ^ length) & mask
    tail = length & ~3
    for k in struct.unpack_from(f"<{tail >> 2}I", data):
        k = (k * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


@lru_cache(maxsize=16_384)
def key_hash(key: bytes) -> int:
    """The positive murmur2 of ``key`` (``toPositive`` in the Java client), cached: producers
    send the same keys over and over (every event of an execution, every sample of a series)."""
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """Kafka's default partitioner: the key's hash modulo the partition count; a record with no
    key goes to a random available partition."""
    if key is None:
        return random.choice(available or all_partitions)
    h = key_hash(key) if type(key) is bytes else murmur2(bytes(key)) & 0x7FFFFFFF
    return all_partitions[h % len(all_partitions)]


def home_partition(key: bytes, partitions: int) -> int:
    """The partition of ``partitions`` that Kafka's default partitioner gives ``key``."""
    return key_hash(key) % partitions
