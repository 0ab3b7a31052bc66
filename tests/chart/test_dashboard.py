"""The Grafana dashboard asks only for metrics the operator exports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from society_operator.api.kube import Condition
from society_operator.api.status import DatasetSize, IterationStatus, SocietyStatus
from society_operator.kube.metrics import OperatorMetrics

from ..conftest import ROOT

DASHBOARD = ROOT / "charts" / "society-operator" / "dashboards" / "society.json"
METRIC = re.compile(r"\bsociety_[a-zA-Z0-9_:]*")
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def exported_names() -> set[str]:
    """Every sample name an operator exports once it has seen a Society through a phase change,
    a Job failure and a failed reconcile."""
    metrics = OperatorMetrics(clock=lambda: T0 + timedelta(hours=1))
    done = IterationStatus(
        iteration=0,
        accuracy=0.5,
        accuracyStderr=0.02,
        consensus=0.8,
        diversity=0.3,
        datasets=[DatasetSize(agent=0, role="generation", examples=10)],
        startTime=T0,
        completionTime=T0 + timedelta(minutes=30),
    )
    running = Condition(type="Progressing", status="True", reason="X", lastTransitionTime=T0)
    debating = SocietyStatus(
        phase="Debating", iterations=[done.model_copy(update={"completionTime": None})]
    )
    metrics.society_status("ns", "s", debating.model_copy(update={"conditions": [running]}))
    metrics.society_status("ns", "s", SocietyStatus(phase="Training", iterations=[done]))
    metrics.job_failed("ns", "s", "critic")
    metrics.reconciled(0.1, error=True)
    metrics.leading(True)
    text = generate_latest(metrics.registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def queries(node: Any) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and template variables."""
    if isinstance(node, list):
        return [q for item in node for q in queries(item)]
    if not isinstance(node, dict):
        return []
    found = [node["expr"]] if isinstance(node.get("expr"), str) else []
    if isinstance(node.get("definition"), str):
        found.append(node["definition"])
    return found + [q for value in node.values() for q in queries(value)]


def test_every_query_names_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    found = queries(dashboard)
    assert len(found) >= 20
    for query in found:
        named = set(METRIC.findall(query))
        assert named, f"names no society_ metric: {query}"
        assert named <= exported, f"{query}: not exported: {sorted(named - exported)}"
        assert query.count("(") == query.count(")") and query.count("{") == query.count("}")


def test_the_dashboard_shows_every_status_metric():
    """The design's list, each on some panel: phase, iteration, accuracy, consensus, diversity,
    dataset sizes, phase durations, Job failures, GPU-seconds."""
    named = {m for q in queries(json.loads(DASHBOARD.read_text())) for m in METRIC.findall(q)}
    for metric in (
        "society_phase",
        "society_iteration",
        "society_eval_accuracy_ratio",
        "society_eval_accuracy_stderr_ratio",
        "society_consensus_ratio",
        "society_diversity",
        "society_dataset_examples",
        "society_phase_duration_seconds_bucket",
        "society_job_failures_total",
        "society_gpu_seconds_total",
        "society_reconcile_errors_total",
    ):
        assert metric in named, metric


def test_panels_use_the_datasource_variable_and_do_not_overlap():
    dashboard = json.loads(DASHBOARD.read_text())
    cells = set()
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        here = {(pos["x"] + i, pos["y"] + j) for i in range(pos["w"]) for j in range(pos["h"])}
        assert not here & cells, f"{panel['title']} overlaps another panel"
        cells |= here
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
