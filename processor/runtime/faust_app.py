"""The Faust app settings of the worker (and of the benchmark's Faust floor)."""

from __future__ import annotations

from typing import Any

from schemas.partitioning import partition_for

FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a fetch of the worker's (and the sink's) consumer that finds no
new records (Faust's is 1,500 ms, aiokafka's default 500). aiokafka keeps one fetch in flight
per broker and leaves out of it the partitions whose fetched records still wait to be consumed;
when the fetch in flight holds only partitions with nothing new, the broker holds it for this
long, and records arriving meanwhile on the partitions left out wait for it (up to 1.5 s with
Faust's). An idle consumer now asks the broker ten times a second instead of about once."""


def app_options(bootstrap: str, partitions: int, compression: str = "none") -> dict[str, Any]:
    """The Faust app's settings of the worker (also those of the benchmark's Faust floor);
    ``compression`` is :attr:`processor.settings.Settings.compression`."""
    return dict(
        broker=f"kafka://{bootstrap}",
        store="memory://",
        topic_partitions=partitions,
        topic_replication_factor=1,
        topic_disable_leader=True,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,  # (16 KiB) a full batch makes the agent await the broker
        producer_acks=-1,
        producer_compression_type=None if compression == "none" else compression,
        producer_partitioner=partition_for,  # Kafka's default, with recent keys' hashes cached
        broker_commit_interval=1.0,
        stream_buffer_maxsize=8192,
        table_cleanup_interval=3600.0,
        # Faust's default standby (1) has every worker consume the other workers' changelogs all
        # along: two workers on 2 cores spent 21 s of CPU on what one does in 11.5 s. A worker
        # taking partitions over recovers them from their compacted changelogs instead.
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        # A worker killed with SIGKILL never leaves its group: the broker notices only when
        # its session expires, and partitions wait that long for a new worker.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_rebalance_timeout=20.0,
    )
