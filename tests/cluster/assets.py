"""The control plane's binaries: found through a setting, checked, unpacked once into a cache.

`SOCIETY_K8S_ASSETS` names a directory laid out like ../shared/k8s (its README says how those
were built): `bin/<name>.xz` and a `SHA256SUMS` of the unpacked binaries. Without the setting,
`<repo>/../shared/k8s` is used when it exists. Each binary is unpacked once into
`<repo>/.cache/k8s/<digest of SHA256SUMS>/` (git-ignored), checked against SHA256SUMS, and
renamed into place atomically, so concurrent sessions and interrupted unpacks are harmless.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from pathlib import Path

from ..tools import ROOT

SETTING = "SOCIETY_K8S_ASSETS"
DEFAULT = ROOT.parent / "shared" / "k8s"
CACHE = ROOT / ".cache" / "k8s"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class AssetsError(RuntimeError):
    """The setting names a directory that does not hold the binaries, or one fails its check."""


def find_assets() -> Path | None:
    """The assets directory, or None where neither the setting nor the default exists."""
    setting = os.environ.get(SETTING)
    if setting:
        path = Path(setting).expanduser()
        if not (path / "SHA256SUMS").is_file():
            raise AssetsError(f"{SETTING}={setting} holds no SHA256SUMS (see {DEFAULT}/README.md)")
        return path
    return DEFAULT if (DEFAULT / "SHA256SUMS").is_file() else None


def _sums(assets: Path) -> dict[str, str]:
    sums = {}
    for line in (assets / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def unpack(assets: Path, names: tuple[str, ...] = CONTROL_PLANE) -> Path:
    """The directory holding the named binaries, unpacked and checked (once per cache)."""
    sums = _sums(assets)
    key = hashlib.sha256((assets / "SHA256SUMS").read_bytes()).hexdigest()[:16]
    bin_dir = CACHE / key
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = bin_dir / name
        if target.exists():
            continue
        source = assets / "bin" / f"{name}.xz"
        if name not in sums or not source.is_file():
            raise AssetsError(f"{assets} has no {source.name} listed in SHA256SUMS")
        partial = bin_dir / f".{name}.{os.getpid()}.partial"
        digest = hashlib.sha256()
        with lzma.open(source) as packed, partial.open("wb") as out:
            while chunk := packed.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sums[name]:
            partial.unlink()
            raise AssetsError(f"{source} unpacks to sha256 {digest.hexdigest()}, not {sums[name]}")
        partial.chmod(0o755)
        partial.replace(target)
    return bin_dir
