"""Problems from files or the Hugging Face hub, sampled so that train and eval never overlap.

A source is a local .jsonl/.json/.parquet file, a directory of them, or a hub dataset id
("owner/name", or "owner/name:config"). A directory holding train* and test* (or eval*) files is
used like a hub dataset with those two splits; any other file or directory is one pool that is
shuffled by the seed and split in half, train and eval alternating, so the two can never share a
problem whatever sizes are asked for. Questions are de-duplicated first, and with two splits a train
question that also appears in the eval split is dropped: the reference code's train/eval overlap
is one of the defects this project does not reproduce.
"""

from __future__ import annotations

import json
import random
import re
from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from .base import SPLITS, DatasetError, Problem, Task, check_request, problem_id

Located = tuple[str, Any]  # (where, record): "where" is what an error message points at
Convert = Callable[[Mapping[str, Any]], tuple[str, str] | None]

_SUFFIXES = (".jsonl", ".json", ".parquet")
_SPLIT_FILE = re.compile(r"(train|test|eval)(?:[-_.]|$)")
_HUB_ID = re.compile(r"[\w.-]+(?:/[\w.-]+)?(?::[\w.-]+)?")


def text_field(record: Mapping[str, Any], *names: str) -> str:
    """The first of `names` the record has; several names let hub columns and our JSONL agree."""
    for name in names:
        if name in record:
            value = record[name]
            if not isinstance(value, str):
                raise ValueError(f"field {name!r} must be a string, not {type(value).__name__}")
            if not value.strip():
                raise ValueError(f"field {name!r} is empty")
            return value
    raise ValueError("missing field " + " or ".join(repr(name) for name in names))


class DatasetTask(Task):
    """A task whose problems come from a dataset rather than a generator."""

    default_source: ClassVar[str | None] = None
    default_config: ClassVar[str | None] = None
    hub_splits: ClassVar[tuple[str, str]] = ("train", "test")

    @abstractmethod
    def convert(self, record: Mapping[str, Any]) -> tuple[str, str]:
        """(question, reference answer) from one record; ValueError says what is wrong with it."""

    def load(self, split: str, size: int, seed: int, source: str | None = None) -> list[Problem]:
        return self.sample(split, size, seed, source, self.convert)

    def sample(
        self,
        split: str,
        size: int,
        seed: int,
        source: str | None,
        convert: Convert,
        kept: str | None = None,
    ) -> list[Problem]:
        """`convert` may return None to leave a record out (MATH's level filter); `kept` says
        which records it keeps, for the error when too few are left."""
        check_request(split, size)
        source = source or self.default_source
        if source is None:
            raise DatasetError(
                f"the {self.name} task needs a source: a .jsonl, .json or .parquet file, "
                "a directory of them, or a Hugging Face dataset id"
            )
        pools = self._read(source)
        if "all" in pools:
            available = _shuffled(_convert(pools["all"], convert), seed)[SPLITS.index(split) :: 2]
            how = "a single pool is split in half between train and eval"
        else:
            evaluation = _convert(pools["eval"], convert)
            if split == "eval":
                available = _shuffled(evaluation, seed)
            else:
                seen = {_key(question) for question, _ in evaluation}
                train = _convert(pools["train"], convert)
                available = _shuffled([p for p in train if _key(p[0]) not in seen], seed)
            how = f"the {split} split, after filtering and removing duplicates"
        if kept is not None:
            how += f", keeping {kept}"
        if size > len(available):
            raise DatasetError(
                f"{source}: asked for {size} {split} problems but only {len(available)} are "
                f"available ({how})"
            )
        return [
            Problem(id=problem_id(self.name, split, question), question=question, answer=answer)
            for question, answer in available[:size]
        ]

    def _read(self, source: str) -> dict[str, list[Located]]:
        path = Path(source).expanduser()
        if path.exists():
            return _read_local(path)
        if path.suffix in _SUFFIXES or source.startswith(("/", ".", "~")):
            raise DatasetError(f"{source}: no such file or directory")
        if not _HUB_ID.fullmatch(source):
            raise DatasetError(f"{source!r} is neither a local path nor a Hugging Face dataset id")
        name, _, config = source.partition(":")
        if not config and name == self.default_source:
            config = self.default_config
        return _read_hub(name, config or None, self.hub_splits)


def _key(question: str) -> str:
    return " ".join(question.split())


def _convert(records: list[Located], convert: Convert) -> list[tuple[str, str]]:
    problems, seen = [], set()
    for where, record in records:
        if not isinstance(record, Mapping):
            raise DatasetError(f"{where}: expected an object, got {type(record).__name__}")
        try:
            problem = convert(record)
        except ValueError as err:
            raise DatasetError(f"{where}: {err}") from err
        if problem is not None and _key(problem[0]) not in seen:
            seen.add(_key(problem[0]))
            problems.append(problem)
    return problems


def _shuffled(problems: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    shuffled = list(problems)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def _read_local(path: Path) -> dict[str, list[Located]]:
    if path.is_file():
        return {"all": _read_file(path)}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
    if not files:
        raise DatasetError(f"{path}: holds no {', '.join(_SUFFIXES)} files")
    pools: dict[str, list[Located]] = {"train": [], "eval": []}
    for file in files:
        match = _SPLIT_FILE.match(file.name)
        if match:
            pools["train" if match.group(1) == "train" else "eval"].extend(_read_file(file))
    if not pools["train"] and not pools["eval"]:
        return {"all": [record for file in files for record in _read_file(file)]}
    for split, other in (("train", "eval"), ("eval", "train")):
        if not pools[split]:
            raise DatasetError(
                f"{path}: has {other} records but no {split} records; name files train* and "
                "test* (or eval*), or use no such names to have one pool split in half"
            )
    return pools


def _read_file(path: Path) -> list[Located]:
    if path.suffix == ".parquet":
        return _read_parquet(path)
    if path.suffix not in _SUFFIXES:
        raise DatasetError(f"{path}: unsupported file type (use {', '.join(_SUFFIXES)})")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
        return [(f"{path}: item {number}", item) for number, item in enumerate(items, 1)]
    # .jsonl, and .json that is JSON lines (what `datasets` writes)
    records = []
    # Lines by JSON Lines' rule, "\n": str.splitlines() would also split at U+2028 and other
    # characters that a JSON string may hold as they are.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            records.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{number}: invalid JSON: {err.msg}") from err
    return records


def _read_parquet(path: Path) -> list[Located]:
    import pyarrow as pa  # a dependency of `datasets`; only parquet sources need it
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as err:
        raise DatasetError(f"{path}: cannot read parquet: {err}") from err
    return [(f"{path}: row {number}", row) for number, row in enumerate(rows, 1)]


def _read_hub(name: str, config: str | None, splits: tuple[str, str]) -> dict[str, list[Located]]:
    import datasets  # heavy, and only hub sources need it

    pools = {}
    for split, hub_split in zip(SPLITS, splits, strict=True):
        try:
            rows = datasets.load_dataset(name, config, split=hub_split)
        except Exception as err:  # network, auth, missing config/split: all mean "cannot load"
            raise DatasetError(
                f"cannot load split {hub_split!r} of {name!r}"
                + (f" (config {config!r})" if config else "")
                + f" from the Hugging Face hub: {err}"
            ) from err
        pools[split] = [(f"{name}[{hub_split}] row {n}", row) for n, row in enumerate(rows, 1)]
    return pools
