"""The contract's partitioner (used by the SDK and the folds) puts every key where Kafka's default partitioner does."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as kafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.ids import uuid7
from schemas.partitioning import murmur2, partition_for
from schemas.topics import series_key


def test_cached_partitioner_agrees_with_the_default_one() -> None:
    keys = [uuid7().encode() for _ in range(200)]
    keys += [series_key(f"t{i % 3}", "api.request.duration", {"endpoint": f"/e{i}", "status": "200"})
             for i in range(200)]
    keys += [b"", b"x", "é".encode()]
    for partitions in (1, 3, 4, 12):
        all_partitions = list(range(partitions))
        for key in keys + keys:  # the second round comes from the cache
            expected = DefaultPartitioner()(key, all_partitions, all_partitions)
            assert partition_for(key, all_partitions, all_partitions) == expected
            assert partition_for(bytearray(key), all_partitions, all_partitions) == expected  # type: ignore[arg-type]


def test_no_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert partition_for(None, [0, 1, 2, 3], [2]) == 2
        assert partition_for(None, [0, 1, 2, 3], []) in (0, 1, 2, 3)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_the_contracts_murmur2_is_kafkas(data: bytes) -> None:
    assert murmur2(data) == kafka_murmur2(data) & 0xFFFFFFFF
