"""The language-neutral contract: JSON Schema (draft 2020-12) files derived from the records.

``schemas/json/<type>.schema.json`` holds one file per event type, ``event.schema.json``
accepts any of them, and ``schemas/json/derived/`` describes the derived topics' values. The files are generated from :mod:`schemas.events` and committed; a unit
test fails when they are out of date. Regenerate with ``python -m schemas.jsonschema``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from schemas.derived import DERIVED_SCHEMAS
from schemas.events import (
    CONTRACT_VERSION,
    EVENT_CLASSES,
    KNOWN_METRIC_TYPES,
    LOG_LEVELS,
    METRIC_TYPE_PATTERN,
    Event,
    FieldSpec,
    Kind,
)
from schemas.limits import (
    ID_PATTERN,
    MAX_ABS_VALUE,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_ID_LENGTH,
    MAX_LABEL_NAME_LENGTH,
    MAX_LABEL_VALUE_LENGTH,
    MAX_LABELS,
    MAX_SAFE_INTEGER,
    SPAN_ID_PATTERN,
    TRACE_ID_PATTERN,
)

SCHEMA_DIR = Path(__file__).with_name("json")
DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://axmon.dev/schemas/v1/"


def _kind_schema(kind: Kind) -> dict[str, Any]:
    if kind is Kind.ID:
        return {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_PATTERN}
    if kind is Kind.TEXT:
        return {"type": "string"}
    if kind is Kind.COUNT:
        return {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER}
    if kind is Kind.EPOCH_MS:
        return {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_SAFE_INTEGER,
            "description": "Epoch milliseconds.",
        }
    if kind is Kind.AMOUNT:
        return {"type": "number", "minimum": 0, "maximum": MAX_ABS_VALUE}
    if kind is Kind.NUMBER:
        return {"type": "number", "minimum": -MAX_ABS_VALUE, "maximum": MAX_ABS_VALUE}
    if kind is Kind.OBJECT:
        return {"type": "object"}
    if kind is Kind.LABELS:
        return {
            "type": "object",
            "maxProperties": MAX_LABELS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_LABEL_NAME_LENGTH},
            "additionalProperties": {"type": "string", "maxLength": MAX_LABEL_VALUE_LENGTH},
        }
    if kind is Kind.METRIC_TYPE:
        return {
            "type": "string",
            "maxLength": MAX_ID_LENGTH,
            "pattern": METRIC_TYPE_PATTERN,
            "examples": list(KNOWN_METRIC_TYPES),
            "description": "One of the 18 known types (see examples) or a custom dotted "
            "lowercase name.",
        }
    if kind is Kind.TRACE_ID:
        return {"type": "string", "pattern": TRACE_ID_PATTERN}
    if kind is Kind.LOG_LEVEL:
        return {"type": "string", "enum": list(LOG_LEVELS)}
    if kind is Kind.SPAN_ID:
        return {"type": "string", "pattern": SPAN_ID_PATTERN}
    raise ValueError(f"unhandled kind {kind}")  # pragma: no cover - Kind is closed


def _field_schema(spec: FieldSpec) -> dict[str, Any]:
    schema = _kind_schema(spec.kind)
    if not spec.required:
        # An optional field may be null, which means the same as absent.
        schema = {**schema, "type": [schema["type"], "null"]}
    if spec.description and "description" not in schema:
        schema = {**schema, "description": spec.description}
    return schema


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of one event type."""
    properties: dict[str, Any] = {
        "type": {"const": cls.TYPE},
        "version": {"const": CONTRACT_VERSION},
    }
    for spec in cls.FIELDS:
        properties[spec.name] = _field_schema(spec)
    required = ["type", "version", *(s.name for s in cls.FIELDS if s.required)]
    extra: dict[str, Any] = {}
    if "span_id" in properties:
        # a span id (not null, which means absent) needs a trace id
        extra["if"] = {"properties": {"span_id": {"type": "string"}}, "required": ["span_id"]}
        extra["then"] = {"properties": {"trace_id": {"type": "string"}}, "required": ["trace_id"]}
    return {
        "$schema": DRAFT,
        "$id": f"{BASE_ID}{cls.TYPE}.schema.json",
        "title": cls.TYPE,
        "description": (cls.__doc__ or cls.TYPE).strip().splitlines()[0]
        + f" At most {MAX_EVENT_BYTES} bytes of JSON, nested at most {MAX_DEPTH} levels.",
        "type": "object",
        "properties": properties,
        "required": required,
        **extra,
        "additionalProperties": True,
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for every event type and the union ``event.schema.json``."""
    files = {f"{t}.schema.json": event_schema(cls) for t, cls in EVENT_CLASSES.items()}
    for topic, schema in DERIVED_SCHEMAS.items():
        files[f"derived/{topic}.schema.json"] = {
            "$schema": DRAFT,
            "$id": f"{BASE_ID}derived/{topic}.schema.json",
            **schema,
        }
    files["event.schema.json"] = {
        "$schema": DRAFT,
        "$id": f"{BASE_ID}event.schema.json",
        "title": "axmon event (contract v1)",
        "description": "Any event of the axmon contract, selected by its 'type'.",
        "oneOf": [{"$ref": f"{t}.schema.json"} for t in EVENT_CLASSES],
    }
    return files


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(path)
