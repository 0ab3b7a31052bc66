"""A real Prometheus scrapes `society operator` (its --metrics-port, a static target on 127.0.0.1)
through a Society's whole run, one training Job failing once; then every query of the chart's
Grafana dashboard, its template variables substituted, parses and returns data for that Society."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import ROOT
from .addons import Prometheus
from .assets import unpack
from .conftest import ASSETS
from .kubelet import Outcome, expected_outcome
from .test_lifecycle import NAME, lora_society
from .test_operator import Children, run_to_end

DASHBOARD = ROOT / "charts" / "society-operator" / "dashboards" / "society.json"


@pytest.fixture
def prometheus(operator, tmp_path: Path) -> Iterator[Prometheus]:
    assert isinstance(ASSETS, Path)
    with Prometheus(
        unpack(ASSETS, ("prometheus",)),
        tmp_path / "prometheus",
        [f"127.0.0.1:{operator.metrics_port}"],
    ) as running:
        yield running
        print(running.log())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' panels included."""
    board = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])

    return [
        (panel.get("title", ""), target["expr"])
        for panel in panels(board["panels"])
        for target in panel.get("targets") or []
        if target.get("expr")
    ]


def substitute(expr: str, namespace: str, society: str) -> str:
    """What Grafana sends for a 10-minute range: its variables replaced."""
    values = {
        "namespace": namespace,  # DNS names: nothing to escape
        "society": society,
        "__range": "10m",
        "__rate_interval": "1m",
        "__interval": "15s",
    }
    result = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
    assert "$" not in result, result
    return result


def test_every_dashboard_query_returns_data_for_the_society(
    api, kubectl, namespace, kubelet, operator, prometheus
):
    failed_once = f"{NAME}-train-gen-0-it1"
    attempts: list[str] = []

    def fail_first(pod: dict[str, Any]) -> Outcome:
        attempts.append(pod["metadata"]["name"])
        if len(attempts) == 1:
            return Outcome(1, '{"error": "CUDA out of memory"}')
        return expected_outcome(pod)

    kubelet.override(failed_once, fail_first)
    kubectl.apply(lora_society(namespace))
    status = run_to_end(api, namespace, NAME, Children(api, namespace, NAME))
    assert status["phase"] == "Succeeded", status
    assert attempts[1:], "the Job was not retried"
    # society_job_failures_total counts Jobs failed past their backoffLimit, which fails the
    # Society: a second one in the namespace does that (sharing the first one's claim).
    broken = lora_society(namespace, backoffLimit=0, storage={"claimName": f"{NAME}-artifacts"})
    broken["metadata"]["name"] = "broken"
    kubelet.fail("broken-debate-it0", "CUDA out of memory")
    kubectl.apply(broken)
    status = run_to_end(api, namespace, "broken", Children(api, namespace, "broken"))
    assert status["phase"] == "Failed", status
    time.sleep(3)  # a few scrapes of the final state

    up = prometheus.query("up")
    assert up["status"] == "success" and up["data"]["result"][0]["value"][1] == "1", up
    # The template variables' own queries (label_values) list this namespace and Society.
    namespaces = prometheus.get("label/namespace/values", **{"match[]": "society_phase"})
    assert namespace in namespaces["data"], namespaces
    societies = prometheus.get(
        "label/society/values", **{"match[]": f'society_phase{{namespace="{namespace}"}}'}
    )
    assert sorted(societies["data"]) == ["broken", NAME], societies

    queries = dashboard_queries()
    assert len(queries) >= 20
    empty, errors = [], []
    for title, expr in queries:
        # Both Societies selected, as Grafana's multi-value variable sends them.
        answer = prometheus.query(substitute(expr, namespace, f"{NAME}|broken"))
        if answer.get("status") != "success":
            errors.append((title, expr, answer.get("error")))
        elif not answer["data"]["result"]:
            empty.append((title, expr))
    assert not errors, errors
    assert not empty, f"no data: {empty}"
