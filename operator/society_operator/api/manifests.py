"""Reading Society manifests from YAML files (multi-document too) for the CLI."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .society import Society
from .validation import Problem, check_society

# Bounds on what one document may expand to: a Society is a few hundred values, nested a few
# levels. Aliases are fine (tolerations shared by inference and training), alias bombs are not.
MAX_NODES = 20_000
MAX_DEPTH = 50


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML would silently keep the last one, and a
    silently dropped setting is the failure `society validate` exists to prevent), unhashable
    keys, and documents that nest too deep or expand, through aliases, to too many values."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_size(node)
        return super().construct_document(node)


def _check_size(root: yaml.Node) -> None:
    """Count the values the document expands to (an alias counts as often as it is used)
    without expanding it, and its depth; refuse past the bounds."""
    count = 0
    todo: list[tuple[yaml.Node, int]] = [(root, 1)]
    while todo:
        node, depth = todo.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark
            )
        if count > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"expands to more than {MAX_NODES} values (through aliases?)",
                node.start_mark,
            )
        if isinstance(node, yaml.SequenceNode):
            todo += [(child, depth + 1) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            todo += [(part, depth + 1) for pair in node.value for part in pair]


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
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
                return name if name.isprintable() else repr(name)  # one line, whatever it holds
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
    except RecursionError:  # the parser's own recursion, before any bound could be checked
        raise ManifestError(
            f"{file}: not valid YAML: nested deeper than {MAX_DEPTH} levels"
        ) from None
    documents = [(i, obj) for i, obj in enumerate(objects, start=1) if obj is not None]
    if not documents:
        raise ManifestError(f"{file}: holds no YAML document")
    for index, obj in documents:
        society, problems = check_society(obj)
        yield Document(file, index, obj, society, problems)
