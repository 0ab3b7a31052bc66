"""`society operator`, the real command in its own process: liveness, metrics, graceful stop.

The process finds the emulator through $KUBECONFIG, as the operator finds a cluster outside one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from .conftest import KubeClient
from .test_operator import NS, Society, summary

SOCIETY = Path(sys.executable).with_name("society")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def samples(metrics_url: str) -> dict[tuple[str, frozenset], float]:
    text = get(metrics_url)[1]
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_society_operator_serves_health_and_metrics_and_stops_on_sigterm(
    kube: KubeClient, apiserver
):
    apiserver.emulator.request_history = 20
    health, metrics = free_port(), free_port()
    command = [str(SOCIETY), "operator", "--no-leader-elect", "--resync-seconds", "1"]
    command += ["--health-port", str(health), "--metrics-port", str(metrics)]
    process = subprocess.Popen(
        command, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        status, body = kube.wait_for(
            lambda: (r := get(f"http://127.0.0.1:{health}/healthz"))[0] == 200 and r,
            "the liveness endpoint",
            timeout=20,
        )
        assert json.loads(body) == {"leading": True}

        society = Society(kube, "phi3").create()
        society.wait_phase("Serving")
        society.servers_ready()
        society.wait_phase("Debating")
        kube.finish_job(NS, "phi3-debate-it0", termination_message=summary(0.625))
        society.wait_phase("Training")

        url = f"http://127.0.0.1:{metrics}/metrics"
        ours = {"namespace": NS, "society": "phi3"}

        def scraped() -> dict | None:
            found = samples(url)
            key = ("society_phase", frozenset((ours | {"phase": "Training"}).items()))
            return found if found.get(key) == 1 else None

        found = kube.wait_for(scraped, "Training in the metrics")
        accuracy = ("society_eval_accuracy_ratio", frozenset((ours | {"iteration": "0"}).items()))
        assert found[accuracy] == 0.625
        assert found[("society_iteration", frozenset(ours.items()))] == 0
        assert found[("society_operator_leader", frozenset())] == 1
        assert found[("society_reconcile_duration_seconds_count", frozenset())] >= 4
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
