"""`python -m tests.cluster` (or `make cluster`): the test control plane, by hand, until Ctrl-C.

The same etcd, kube-apiserver, controller manager, scheduler and kwok (with the fake CPU, A100
and H100 pools and the volumes) that the cluster tests start, with the Society CRD installed.
Point kubectl at the printed kubeconfig and poke at it; `society operator` runs against it too.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

from ..tools import ROOT, tool
from .assets import DEFAULT, SETTING, find_assets, unpack
from .controlplane import ControlPlane


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("--no-crd", action="store_true", help="do not install the Society CRD")
    args = parser.parse_args()
    assets = find_assets()
    if assets is None:
        print(f"no Kubernetes control-plane binaries: set {SETTING} or provide {DEFAULT}")
        return 1
    plane = ControlPlane(unpack(assets))
    try:
        plane.start()
        kubectl = str(tool("kubectl"))
        if not args.no_crd:
            subprocess.run(
                [kubectl, "--kubeconfig", str(plane.kubeconfig), "apply", "--server-side"]
                + ["-f", str(ROOT / "crds" / "society.yaml")],
                check=True,
                capture_output=True,
            )
        print(
            f"control plane up in {plane.started_in:.1f}s at {plane.server} (logs: {plane.workdir})"
        )
        print(f"kubectl and helm: {tool('kubectl').parent}")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        print("Ctrl-C stops it and removes everything.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())
