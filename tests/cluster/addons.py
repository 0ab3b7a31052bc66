"""Prometheus and Kueue beside the control plane, as ../shared/k8s/README.md says they run: plain
processes on 127.0.0.1, in their own process groups, stopped with the test that started them.

    with Prometheus(bin_dir, workdir, targets=["127.0.0.1:9090"]) as prometheus:
        prometheus.query("up")

    with Kueue(bin_dir, config_tarball, workdir, kubectl) as kueue:
        ...  # Kueue's CRDs are installed and its webhooks answer for Jobs

Kueue's webhooks have failurePolicy Fail: while they are registered and Kueue is down, every Job
create in the cluster is refused. They are registered only once Kueue answers, and removed before
it stops, so the rest of the session never sees them.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .controlplane import Process, free_port, stop_processes, wait_for


class Prometheus:
    """A Prometheus server scraping static loopback targets every second."""

    def __init__(self, bin_dir: Path, workdir: Path, targets: list[str]) -> None:
        self.bin_dir, self.workdir, self.targets = bin_dir, workdir, targets
        self.port = 0
        self.process: Process | None = None

    def __enter__(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "society-operator",
                            "static_configs": [{"targets": self.targets}],
                        }
                    ],
                }
            )
        )
        self.port = free_port()
        self.process = Process(
            "prometheus",
            [
                str(self.bin_dir / "prometheus"),
                *("--config.file", str(config)),
                *("--storage.tsdb.path", str(self.workdir / "data")),
                *("--web.listen-address", f"127.0.0.1:{self.port}"),
                *("--log.level", "warn"),
            ],
            self.workdir / "prometheus.log",
        )
        wait_for(self._ready, "Prometheus ready", 30, 0.2)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            stop_processes([self.process])
            self.process = None

    def _ready(self) -> bool:
        assert self.process is not None
        self.process.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def get(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the JSON body, whatever its status (a bad query answers 400)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return json.load(error)

    def query(self, expr: str) -> Any:
        return self.get("query", query=expr)

    def log(self) -> str:
        return self.process.tail(50) if self.process else ""


# Kueue's webhooks for its own kinds, batch/v1 Jobs, Deployments and Pods (Kueue admits a
# Deployment's pods one by one); the others (StatefulSets, frameworks not installed here) are
# left out, with their integrations.
KUEUE_WEBHOOK_PATHS = ("kueue-x-k8s-io", "-batch-v1-job", "-apps-v1-deployment", "--v1-pod")
KUEUE_FIXED_CERT_DIRS = (Path("/etc/kueue/metrics/certs"), Path("/visibility"))


class Kueue:
    """The Kueue controller manager with its CRDs and webhooks, on loopback."""

    def __init__(self, bin_dir: Path, config: Path, workdir: Path, kubectl) -> None:
        self.bin_dir, self.config, self.workdir, self.kubectl = bin_dir, config, workdir, kubectl
        self.process: Process | None = None
        self.webhooks: list[str] = []  # kind/name, registered

    def __enter__(self) -> Kueue:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(self.config) as tar:
            tar.extractall(self.workdir / "config", filter="data")
        config = self.workdir / "config"
        self.kubectl.run("apply", "--server-side", "-f", str(config / "crd" / "bases"))
        # Retried: a CRD with no conditions yet makes kubectl wait fail rather than wait.
        wait_for(
            lambda: (
                not self.kubectl.run(
                    *("wait", "--for=condition=Established", "-f", str(config / "crd" / "bases")),
                    check=False,
                ).returncode
            ),
            "Kueue's CRDs Established",
            every=0.5,
        )
        certs = self.workdir / "certs"
        certs.mkdir(exist_ok=True)
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
                *("-keyout", str(certs / "tls.key"), "-out", str(certs / "tls.crt")),
                *("-days", "1", "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
        )
        for fixed in KUEUE_FIXED_CERT_DIRS:  # Kueue insists on these paths
            fixed.mkdir(parents=True, exist_ok=True)
            for name in ("tls.crt", "tls.key"):
                shutil.copy(certs / name, fixed / name)
        self.webhook_port = free_port()
        health = free_port()
        settings = self.workdir / "kueue.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "config.kueue.x-k8s.io/v1beta2",
                    "kind": "Configuration",
                    "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
                    "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
                    "webhook": {
                        "port": self.webhook_port,
                        "host": "127.0.0.1",
                        "certDir": str(certs),
                    },
                    "leaderElection": {"leaderElect": False},
                    "internalCertManagement": {"enable": False},
                    "integrations": {"frameworks": ["batch/job", "pod", "deployment"]},
                }
            )
        )
        self.process = Process(
            "kueue",
            [
                str(self.bin_dir / "kueue"),
                *("--config", str(settings)),
                *("--kubeconfig", str(self.kubectl.kubeconfig)),
            ],
            self.workdir / "kueue.log",
        )

        def healthy() -> bool:
            assert self.process is not None
            self.process.check()
            try:
                url = f"http://127.0.0.1:{health}/readyz"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(healthy, "Kueue ready", 60, 0.3)
        wait_for(self._webhook_answers, "Kueue's webhook server", 30, 0.3)
        self._register_webhooks(config / "webhook" / "manifests.yaml", certs / "tls.crt")

    def _webhook_answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.workdir / "certs" / "tls.crt"))
        try:
            urllib.request.urlopen(
                f"https://127.0.0.1:{self.webhook_port}/", context=context, timeout=2
            )
        except urllib.error.HTTPError:
            return True  # it answered (404 for /)
        except OSError:
            return False
        return True

    def _register_webhooks(self, manifests: Path, ca: Path) -> None:
        bundle = base64.b64encode(ca.read_bytes()).decode()
        for document in yaml.safe_load_all(manifests.read_text()):
            if not document:
                continue
            hooks = []
            for hook in document["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                if any(part in path for part in KUEUE_WEBHOOK_PATHS):
                    url = f"https://127.0.0.1:{self.webhook_port}{path}"
                    hook["clientConfig"] = {"url": url, "caBundle": bundle}
                    hooks.append(hook)
            document["webhooks"] = hooks
            document["metadata"]["name"] = f"kueue-{document['metadata']['name']}"
            self.kubectl.apply(document)
            self.webhooks.append(f"{document['kind']}/{document['metadata']['name']}")

    def __exit__(self, *exc) -> None:
        for webhook in self.webhooks:
            self.kubectl.run("delete", webhook.lower(), "--ignore-not-found", check=False)
        self.webhooks = []
        if self.process is not None:
            stop_processes([self.process])
            self.process = None

    def log(self) -> str:
        return self.process.tail(60) if self.process else ""
