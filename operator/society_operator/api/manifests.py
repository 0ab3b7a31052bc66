"""Reading Society manifests from YAML files (multi-document too) for the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .society import Society
from .validation import Problem, check_society


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one, and a
    silently dropped setting is the failure `society validate` exists to prevent."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


@dataclass
class Document:
    """One YAML document of a file, validated."""

    file: str
    index: int  # from 1, as a person counts
    obj: Any
    society: Society | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def label(self) -> str:
        """metadata.name when the document has one, else its position in the file."""
        if isinstance(self.obj, dict):
            name = (self.obj.get("metadata") or {}).get("name")
            if isinstance(name, str) and name:
                return name
        return f"document {self.index}"

    def lines(self) -> list[str]:
        return [f"{self.file}: {self.label}: {problem}" for problem in self.problems]


class ManifestError(Exception):
    """A file that could not be read as YAML at all; the message is one line naming it."""


def _yaml_problem(file: str, error: yaml.YAMLError) -> ManifestError:
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    return ManifestError(f"{file}: not valid YAML{where}: {what}")


def load_documents(path: str | Path) -> Iterator[Document]:
    """Each non-empty YAML document of `path`, validated as a Society."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ManifestError(f"{file}: cannot read: {reason}") from None
    try:
        objects = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as error:
        raise _yaml_problem(file, error) from None
    documents = [(i, obj) for i, obj in enumerate(objects, start=1) if obj is not None]
    if not documents:
        raise ManifestError(f"{file}: holds no YAML document")
    for index, obj in documents:
        society, problems = check_society(obj)
        yield Document(file, index, obj, society, problems)
