"""Rebuild a builtin model from its recipe: `python -m society_trainer.models.build NAME DIR`.

Writes the model directory DIR (which must not exist yet) with the recipe, then build.json (the
recipe's version, the source commit, the software and CPU it ran on, how long it took) and
SHA256SUMS, and says whether the weights are bit-identical to the ones the package ships. They
are on the machine and software that built the shipped ones (docs/method.md names them); another
CPU's vector kernels give other bits. To ship a new build, copy DIR over
society_trainer/models/weights/NAME/ and measure it again (tests/trainer/test_builtin_model.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from .builtin import BUILTINS, CHECKSUMS, RECORD, SHIPPED, WEIGHTS, read_checksums, write_checksums

WEIGHTS_FILE = "model.safetensors"


def build(name: str, path: Path) -> Path:
    """Build builtin `name` into `path` with its recipe and record how; returns `path`."""
    import torch
    import transformers

    if name not in BUILTINS:
        raise SystemExit(
            f"build: unknown builtin model {name!r}; builtin models: {sorted(BUILTINS)}"
        )
    if path.exists():
        raise SystemExit(f"build: {path} exists; name a new directory")
    version, recipe = BUILTINS[name]
    started = time.monotonic()
    recipe(path)
    record = {
        "name": name,
        "recipe": version,
        "source_commit": _commit(),
        "build_seconds": round(time.monotonic() - started),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": _cpu(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
    (path / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    write_checksums(path)
    return path


def shipped_weights_digest(name: str) -> str | None:
    sums = WEIGHTS / name / CHECKSUMS
    if name not in SHIPPED or not sums.is_file():
        return None
    return dict((file, digest) for digest, file in read_checksums(sums)).get(WEIGHTS_FILE)


def _commit() -> str:
    """The source's git commit, with `-dirty` when its working tree has changes; `unknown`
    outside a git checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit or "unknown"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m society_trainer.models.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", help=f"builtin model: {', '.join(sorted(BUILTINS))}")
    parser.add_argument("dir", type=Path, help="the model directory to write (must not exist)")
    args = parser.parse_args(argv)
    path = build(args.name, args.dir)
    built = dict((f, d) for d, f in read_checksums(path / CHECKSUMS))[WEIGHTS_FILE]
    shipped = shipped_weights_digest(args.name)
    print(f"built builtin:{args.name} into {path}: {WEIGHTS_FILE} sha256 {built}")
    if shipped is None:
        print("the package ships no weights for it to compare with")
    elif shipped == built:
        print("bit-identical to the weights the package ships")
    else:
        print(f"differs from the weights the package ships (sha256 {shipped})")


if __name__ == "__main__":
    sys.exit(main())
