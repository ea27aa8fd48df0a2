"""The axmon event contract (v1): records, codec, topics and ids.

The JSON Schema files in ``schemas/json/`` are the language-neutral form of the same contract.
"""

from schemas.codec import decode_event, encode_event, event_from_dict, event_to_dict, parse_event
from schemas.errors import AxmonError, InvalidEvent
from schemas.events import (
    CONTRACT_VERSION,
    EVENT_CLASSES,
    KNOWN_METRIC_TYPES,
    LIFECYCLE_TYPES,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionUpdated,
    LifecycleEvent,
    LogRecorded,
    MetricRecorded,
    StepCompleted,
    StepEvent,
    StepFailed,
    StepRetried,
    StepStarted,
)
from schemas.ids import uuid7
from schemas.topics import Topics, series_key

__all__ = [
    "CONTRACT_VERSION",
    "EVENT_CLASSES",
    "KNOWN_METRIC_TYPES",
    "LIFECYCLE_TYPES",
    "AxmonError",
    "Event",
    "ExecutionCancelled",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionStarted",
    "ExecutionUpdated",
    "InvalidEvent",
    "LifecycleEvent",
    "LogRecorded",
    "MetricRecorded",
    "StepCompleted",
    "StepEvent",
    "StepFailed",
    "StepRetried",
    "StepStarted",
    "Topics",
    "decode_event",
    "encode_event",
    "event_from_dict",
    "event_to_dict",
    "parse_event",
    "series_key",
    "uuid7",
]
