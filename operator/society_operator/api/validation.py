"""Turning a Society object into either a model or one readable line per problem.

Used by `society validate`, `society run` and the operator (whose Failed condition quotes these
lines), so a user sees the same words wherever the manifest is checked.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from .society import API_VERSION, KIND, Society
from .strings import PATTERN_WORDS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where (a dotted field path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that sits at `loc` under Society, following fields by their aliases."""
    model: Any = Society
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        model = _first_model(fields[part].annotation)
        if model is None:
            return None
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside an annotation such as `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _unknown_field(loc: tuple[int | str, ...]) -> str:
    name = str(loc[-1])
    parent = _model_at(loc[:-1])
    if parent is None:
        return "unknown field"
    allowed = [f.alias or n for n, f in parent.model_fields.items()]
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown field{hint}; allowed fields: {', '.join(allowed)}"


def _describe(error: dict[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return Problem(_path(loc), _unknown_field(loc))
    if kind == "missing":
        return Problem(_path(loc), "required field is missing")
    if kind == "cross_field":
        field = (error.get("ctx") or {}).get("field")
        return Problem(_path(loc + ((field,) if field else ())), error["msg"])
    message = error["msg"]
    if kind == "string_pattern_mismatch":
        message = PATTERN_WORDS.get((error.get("ctx") or {}).get("pattern"), message)
    if "input" in error and not isinstance(error["input"], dict | list):
        message += f" (got {error['input']!r})"
    return Problem(_path(loc), message)


# Tags pydantic appends to the location of an error inside one branch of a union.
_UNION_BRANCHES = ("int", "str", "constrained-str")


def problems_of(error: ValidationError) -> list[Problem]:
    """pydantic's errors as Problems, in document order, without duplicates."""
    seen: dict[str, Problem] = {}
    for item in error.errors(include_url=False):
        # A union (X | None, int | str) reports one error per branch; keep the first per field.
        if item["loc"] and item["loc"][-1] in _UNION_BRANCHES:
            item = {**item, "loc": item["loc"][:-1]}
        problem = _describe(item)
        seen.setdefault(problem.path, problem)
    return list(seen.values())


# A Society, or None and why not. Nothing changes a checked Society: the operator validates each
# version once (kube/controller.py), and the reconcile works on a copy of its status.
Checked = tuple[Society | None, list[Problem]]


def check_society(obj: Any) -> Checked:
    """Validate one decoded Kubernetes object as a Society."""
    if not isinstance(obj, dict):
        return None, [
            Problem(
                "",
                "not a Kubernetes object: expected a mapping with apiVersion, "
                "kind, metadata and spec",
            )
        ]
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind != KIND:
        return None, [Problem("kind", f"expected {KIND}, got {kind!r}")]
    if api_version != API_VERSION:
        return None, [Problem("apiVersion", f"expected {API_VERSION}, got {api_version!r}")]
    try:
        return Society.model_validate(obj), []
    except ValidationError as error:
        return None, problems_of(error)
