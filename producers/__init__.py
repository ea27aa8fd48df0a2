"""The Python producer SDK: publish workflow lifecycle events and metric samples to Kafka.

``AxmonProducer`` (asyncio) and ``SyncAxmonProducer`` (blocking, thread-safe) follow the
original WorkflowMonitor and MetricsCollector API.
"""

from producers.client import (
    DEFAULT_BOOTSTRAP,
    AxmonProducer,
    DeliveryError,
    ProducerClosedError,
    ProducerConfig,
    route,
)
from producers.factory import EventFactory, UnknownExecutionError
from producers.jsonl import LineError, ProduceReport, produce_lines
from producers.sync import SyncAxmonProducer

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "AxmonProducer",
    "DeliveryError",
    "EventFactory",
    "LineError",
    "ProduceReport",
    "ProducerClosedError",
    "ProducerConfig",
    "SyncAxmonProducer",
    "UnknownExecutionError",
    "produce_lines",
    "route",
]
