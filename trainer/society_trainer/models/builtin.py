"""Models this project makes itself (`builtin:<name>`): shipped with the package, or built on
first use and cached.

A run without a GPU or a network (`society run examples/tiny.yaml`, CI) still needs a base model
that every step loads the ordinary way, and one that can already do the task somewhat: the method
selects an agent's right answers, so a model that is never right has nothing to learn from, and one
that is always right has nothing to gain. `tiny-equations` (tiny_equations.py, the demo's: it
answers, summarises and checks answers as a critic) and `tiny-arithmetic` (tiny_arithmetic.py, the
paper's arithmetic with values 0..9; it cannot criticise) are such models.

Shipped: both builtins' weights, as their recipes built them once, are package data
(weights/<name>/, with SHA256SUMS and the build's record in build.json). A fresh machine never
trains them: a rebuild on another CPU gives other bits, and tiny-arithmetic's accuracy is not
stable across them (docs/method.md). Every load checks the files against SHA256SUMS; a file that
does not match is a one-line error naming it. `python -m society_trainer.models.build NAME DIR`
rebuilds one from its recipe.

Built on first use (a builtin that is not shipped): the build is seeded and lands in the cache by
one rename, under a file lock: two processes that ask at once build once, and a build killed
halfway leaves nothing that looks finished. The cache directory is $SOCIETY_CACHE_DIR/models
(default ~/.cache/society-operator/models); a directory name carries the recipe's version, so a
changed recipe builds afresh instead of reusing a stale model.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .names import BUILTIN_PREFIX, ModelNotFoundError

log = logging.getLogger(__name__)

CACHE_ENV = "SOCIETY_CACHE_DIR"
WEIGHTS = Path(__file__).parent / "weights"  # shipped builds: WEIGHTS/<name>/
CHECKSUMS = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` format: "<hex>  <file name>" per line
RECORD = "build.json"  # how the shipped files were built: recipe version, commit, software


def _tiny_arithmetic(path: Path) -> None:
    from .tiny_arithmetic import build

    build(path)


def _tiny_equations(path: Path) -> None:
    from .tiny_equations import build

    build(path)


# name -> (recipe version, builder writing a model directory to the path it is given)
BUILTINS: dict[str, tuple[str, Callable[[Path], None]]] = {
    # v2: the critic prompt restates the question; v3: trained only on problems no Society draws
    "tiny-arithmetic": ("v3", _tiny_arithmetic),
    # v1: the research's D6 (docs/research/tiny-equations), five stages
    "tiny-equations": ("v1", _tiny_equations),
}
# Builtins whose weights are package data (WEIGHTS/<name>/); the others are built on first use.
SHIPPED = frozenset({"tiny-arithmetic", "tiny-equations"})


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or "~/.cache/society-operator"
    return Path(root).expanduser() / "models"


def builtin_model(name: str) -> Path:
    """The directory of builtin model `name`: the shipped one (checked against its checksums),
    or the cached build, built now if it is not cached yet."""
    if name not in BUILTINS:
        known = ", ".join(f"{BUILTIN_PREFIX}{n}" for n in sorted(BUILTINS))
        raise ModelNotFoundError(
            f"unknown builtin model '{BUILTIN_PREFIX}{name}'; builtin models: {known}"
        )
    if name in SHIPPED:
        return shipped_model(name)
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


def shipped_model(name: str, weights: Path = WEIGHTS) -> Path:
    """The package's copy of builtin `name`, after checking every file SHA256SUMS lists."""
    path = weights / name
    sums = path / CHECKSUMS
    rebuild = f"python -m society_trainer.models.build {name} DIR rebuilds it"
    if not sums.is_file():
        raise ModelNotFoundError(
            f"builtin:{name}: {sums} is missing (the package was installed without its model "
            f"files; reinstall it, or {rebuild} and the Society can name DIR)"
        )
    for expected, file_name in read_checksums(sums):
        file = path / file_name
        if not file.is_file():
            raise ModelNotFoundError(f"builtin:{name}: {file} is missing ({sums} lists it)")
        actual = sha256(file)
        if actual != expected:
            raise ModelNotFoundError(
                f"builtin:{name}: {file} does not match its checksum in {sums} "
                f"(sha256 {actual[:16]}..., expected {expected[:16]}...); reinstall the package"
            )
    return path


def read_checksums(sums: Path) -> list[tuple[str, str]]:
    """(sha256 hex, file name) per line of a `sha256sum` file; a malformed line is an error."""
    entries = []
    for number, line in enumerate(sums.read_text().splitlines(), 1):
        digest, _, file_name = line.partition("  ")
        if len(digest) != 64 or not file_name or "/" in file_name:
            raise ModelNotFoundError(f"{sums}:{number}: not a '<sha256>  <file name>' line")
        entries.append((digest, file_name))
    if not entries:
        raise ModelNotFoundError(f"{sums}: lists no files")
    return entries


def write_checksums(path: Path) -> Path:
    """Write SHA256SUMS for every file in model directory `path` (sorted, no subdirectories)."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name != CHECKSUMS)
    sums = path / CHECKSUMS
    sums.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in files))
    return sums


def sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()
