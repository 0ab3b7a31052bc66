"""Which fields of a Society may not change once it exists, read from the one declaration.

The models mark a field immutable with a CEL transition rule `self == oldSelf`
(`base.IMMUTABLE_RULE`); the apiserver enforces it from the CRD. `society run` has no apiserver,
so it compares a rerun's manifest with the stored one along the same paths.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .base import CEL_VALIDATIONS, IMMUTABLE_RULE
from .spec import SocietySpec


def immutable_fields(model: type[BaseModel] = SocietySpec, prefix: str = "spec") -> list[str]:
    """Dotted paths of the fields the CRD declares immutable (CEL `self == oldSelf`)."""
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{info.alias or name}"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if any(r.get("rule") == IMMUTABLE_RULE for r in extra.get(CEL_VALIDATIONS, [])):
            found.append(path)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found += immutable_fields(info.annotation, path)
    return found


def value_at(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted path below the document's top key (`spec.x.y` -> document[x][y])."""
    value: Any = document
    for part in path.split(".")[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def changed_immutable_fields(old_spec: dict[str, Any], new_spec: dict[str, Any]) -> list[str]:
    """The immutable fields whose values differ between two specs (as manifests)."""
    return [
        path for path in immutable_fields() if value_at(old_spec, path) != value_at(new_spec, path)
    ]
