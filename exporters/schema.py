"""A small JSON Schema validator for the subset our report schemas use (no extra dependency).

Supported keywords: type (one or a list), enum, required, properties, additionalProperties (bool or schema),
items, minItems, minimum, maximum, exclusiveMinimum. Unknown keywords are ignored, as JSON Schema does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).with_name("schemas")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped with compressor, e.g. ``bench``."""
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Every violation of `schema` in `value`, as 'path: problem' lines (empty: valid)."""
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > maximum {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errors.append(f"{where}: {value} <= exclusive minimum {schema['exclusiveMinimum']}")
    if isinstance(value, dict):
        errors += [f"{where}: missing '{k}'" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                errors += validate(v, props[k], f"{where}.{k}")
            elif extra is False:
                errors.append(f"{where}: unexpected '{k}'")
            elif isinstance(extra, dict):
                errors += validate(v, extra, f"{where}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: {len(value)} items, fewer than {schema['minItems']}")
        if "items" in schema:
            for i, v in enumerate(value):
                errors += validate(v, schema["items"], f"{where}[{i}]")
    return errors
