"""Models this project builds itself (`builtin:<name>`), cached on first use.

A run without a GPU or a network (`society run examples/tiny.yaml`, CI) still needs a base model
that every step loads the ordinary way, and one that can already do the task somewhat: the method
selects an agent's right answers, so a model that is never right has nothing to learn from, and one
that is always right has nothing to gain. `tiny-arithmetic` (tiny_arithmetic.py) is such a model.

Builds are deterministic (seeded) and land in the cache by one rename, under a file lock: two
processes that ask at once build once, and a build killed halfway leaves nothing that looks
finished. The cache directory is $SOCIETY_CACHE_DIR/models (default
~/.cache/society-operator/models); a directory name carries the recipe's version, so a changed
recipe builds afresh instead of reusing a stale model.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .names import BUILTIN_PREFIX, ModelNotFoundError

log = logging.getLogger(__name__)

CACHE_ENV = "SOCIETY_CACHE_DIR"


def _tiny_arithmetic(path: Path) -> None:
    from .tiny_arithmetic import build

    build(path)


# name -> (recipe version, builder writing a model directory to the path it is given)
BUILTINS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tiny-arithmetic": ("v2", _tiny_arithmetic),  # v2: the critic prompt restates the question
}


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or "~/.cache/society-operator"
    return Path(root).expanduser() / "models"


def builtin_model(name: str) -> Path:
    """The directory of builtin model `name`, built now if it is not cached yet."""
    if name not in BUILTINS:
        known = ", ".join(f"{BUILTIN_PREFIX}{n}" for n in sorted(BUILTINS))
        raise ModelNotFoundError(
            f"unknown builtin model '{BUILTIN_PREFIX}{name}'; builtin models: {known}"
        )
    version, build = BUILTINS[name]
    root = cache_dir()
    path = root / f"{name}-{version}"
    if (path / "config.json").is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{path.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first; then it's cached
        if (path / "config.json").is_file():
            return path
        log.info("building builtin:%s into %s (first use)", name, path)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=root))
        try:
            build(staging / "model")
            os.replace(staging / "model", path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path
