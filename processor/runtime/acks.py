"""Acknowledging an alert: find it by its id (or a unique prefix), build the ack of a firing
threshold alert, and publish it to ``<prefix>alert-acks`` on the partition of the alert's series,
so the worker applies it to the alert's state. ``axmon alerts ack`` and the API's ack route both
go through here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from processor.errors import BrokerError, ConfigError
from processor.folds.alerting import Ack
from processor.store.queries import Monitor


def find_alert(monitor: Monitor, prefix: str) -> dict[str, Any]:
    """The alert whose id is ``prefix`` or starts with it (one only)."""
    exact = monitor.get_alert(prefix)
    if exact is not None:
        return exact
    matches = monitor.find_alert_ids(prefix)
    if not matches:
        raise ConfigError(f"no alert {prefix!r} in the database")
    if len(matches) > 1:
        raise ConfigError(f"{prefix!r} matches more than one alert: give more of the id")
    found = monitor.get_alert(matches[0])
    assert found is not None
    return found


def ack_of(alert: Mapping[str, Any], by: str) -> Ack:
    """The ack of a firing threshold alert (a :class:`ConfigError` for any other)."""
    if alert["status"] == "acknowledged":
        raise ConfigError(f"alert {alert['id']} was acknowledged by {alert['acknowledged_by'] or '?'} already")
    if alert["status"] != "firing":
        raise ConfigError(f"alert {alert['id']} is {alert['status']}: only a firing alert can be acknowledged")
    if alert["kind"] != "threshold":
        raise ConfigError(f"alert {alert['id']} is a {alert['kind']} alert: it clears itself when the execution moves")
    return Ack(alert["id"], alert["rule"], alert["series"], by, int(time.time() * 1000))


async def publish_ack(bootstrap: str, topic: str, ack: Ack, partition: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    try:
        await producer.start()
        await producer.send_and_wait(topic, orjson.dumps(ack.to_json()), key=ack.alert_id.encode(), partition=partition)
    except KafkaError as exc:
        raise BrokerError(f"could not publish the ack to {topic} at {bootstrap}: {exc}") from exc
    finally:
        await producer.stop()
