"""``systemHealth``: what ``axmon health`` reports; without a broker, its database part."""

from __future__ import annotations

import asyncio
from typing import Any

from processor.ops.health import database_component, evaluate
from processor.ops.health_probe import observe, observe_database
from processor.serve.deps import ServeConfig
from processor.store.db import SCHEMA_VERSION


def system_health(config: ServeConfig) -> dict[str, Any]:
    """``axmon health --json``'s document; with no bootstrap, only the ``database`` component
    (``overall`` is its status). Runs its own event loop: call it from a worker thread."""
    if config.bootstrap is None:
        component = database_component(observe_database(config.db_path), SCHEMA_VERSION)
        return {"overall": component.status.value, "bootstrap": None, "db_path": str(config.db_path),
                "components": [component.to_json()]}
    observations = asyncio.run(observe(config.topics, config.bootstrap, config.db_path, timeout_s=5.0))
    return evaluate(observations).to_json()
