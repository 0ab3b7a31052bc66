"""The operator's metrics as Prometheus reads them: the exposition text, parsed."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from society_operator.api.kube import Condition
from society_operator.api.status import DatasetSize, IterationStatus, SocietyStatus
from society_operator.kube.metrics import (
    PHASE_BUCKETS,
    OperatorMetrics,
    _DurationCollector,
    _Durations,
)

from .test_reconciler import World, debate_summary

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def scrape(metrics: OperatorMetrics) -> dict[tuple[str, frozenset], float]:
    """Every sample, keyed by its name and labels."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: dict, name: str, **labels: str) -> list[dict[str, str]]:
    """The label sets of `name`'s samples that carry `labels`."""
    return [
        dict(key)
        for sample, key in samples
        if sample == name and set(labels.items()) <= set(dict(key).items())
    ]


def evaluated(iteration: int, accuracy: float, agents: int = 3) -> IterationStatus:
    return IterationStatus(
        iteration=iteration,
        accuracy=accuracy,
        accuracyStderr=0.02,
        consensus=0.8,
        diversity=0.3,
        datasets=[
            DatasetSize(agent=n, role=role, examples=100 + n)
            for n in range(agents)
            for role in ("generation", "critic")
        ],
        startTime=T0 + timedelta(hours=iteration),
        completionTime=T0 + timedelta(hours=iteration, minutes=30),
    )


def condition(kind: str, status: str, at: datetime) -> Condition:
    return Condition(type=kind, status=status, reason="Test", lastTransitionTime=at)


SOCIETY = {"namespace": "research", "society": "phi3"}


def test_a_status_becomes_phase_iteration_results_and_gpu_seconds():
    metrics = OperatorMetrics()
    status = SocietyStatus(
        phase="Training",
        iteration=1,
        iterations=[evaluated(0, 0.5), evaluated(1, 0.625)],
        gpuSeconds=7200.5,
    )
    metrics.society_status("research", "phi3", status)
    samples = scrape(metrics)

    phases = {
        s["phase"]: value(samples, "society_phase", **s) for s in series(samples, "society_phase")
    }
    assert phases == {
        "Pending": 0,
        "Serving": 0,
        "Debating": 0,
        "Training": 1,
        "Succeeded": 0,
        "Failed": 0,
        "Suspended": 0,
    }
    assert value(samples, "society_iteration", **SOCIETY) == 1
    assert value(samples, "society_gpu_seconds_total", **SOCIETY) == 7200.5
    assert value(samples, "society_eval_accuracy_ratio", **SOCIETY, iteration="0") == 0.5
    assert value(samples, "society_eval_accuracy_ratio", **SOCIETY, iteration="1") == 0.625
    assert value(samples, "society_eval_accuracy_stderr_ratio", **SOCIETY, iteration="1") == 0.02
    assert value(samples, "society_consensus_ratio", **SOCIETY, iteration="1") == 0.8
    assert value(samples, "society_diversity", **SOCIETY, iteration="1") == 0.3
    examples = dict(**SOCIETY, iteration="1", agent="2", role="critic")
    assert value(samples, "society_dataset_examples", **examples) == 102
    assert len(series(samples, "society_dataset_examples", iteration="0")) == 6


def test_an_iteration_without_results_yet_exports_no_result_series():
    metrics = OperatorMetrics()
    debating = IterationStatus(iteration=0, startTime=T0)  # the debate is still running
    metrics.society_status(
        "research", "phi3", SocietyStatus(phase="Debating", iterations=[debating])
    )
    samples = scrape(metrics)
    assert series(samples, "society_eval_accuracy_ratio") == []
    assert series(samples, "society_dataset_examples") == []
    assert value(samples, "society_phase", **SOCIETY, phase="Debating") == 1


def test_per_iteration_series_cover_only_the_latest_iterations():
    metrics = OperatorMetrics(iteration_window=4)
    status = SocietyStatus(
        phase="Succeeded",
        iteration=30,
        iterations=[evaluated(i, i / 100, agents=8) for i in range(31)],
    )
    metrics.society_status("research", "phi3", status)
    samples = scrape(metrics)
    accuracy = series(samples, "society_eval_accuracy_ratio")
    assert sorted(int(s["iteration"]) for s in accuracy) == [27, 28, 29, 30]
    assert len(series(samples, "society_dataset_examples")) == 4 * 8 * 2
    assert len(series(samples, "society_phase")) == 7


def test_a_deleted_society_leaves_no_series():
    metrics = OperatorMetrics(clock=lambda: T0)
    other = SocietyStatus(phase="Serving", iterations=[evaluated(0, 0.5)])
    metrics.society_status("research", "other", other)
    metrics.society_status("research", "phi3", SocietyStatus(phase="Serving", startTime=T0))
    metrics.society_status("research", "phi3", SocietyStatus(phase="Failed", startTime=T0))
    metrics.job_failed("research", "phi3", "critic")
    metrics.job_failed("research", "other", "debate")
    samples = scrape(metrics)
    assert value(samples, "society_job_failures_total", **SOCIETY, role="critic") == 1
    assert value(samples, "society_phase_duration_seconds_count", **SOCIETY, phase="Serving") == 1

    metrics.society_deleted("research", "phi3")
    samples = scrape(metrics)
    assert not [key for key in samples if ("society", "phi3") in key[1]]
    assert value(samples, "society_phase", namespace="research", society="other", phase="Serving")
    assert (
        value(
            samples,
            "society_job_failures_total",
            namespace="research",
            society="other",
            role="debate",
        )
        == 1
    )
    metrics.society_deleted("research", "phi3")  # deleting twice is harmless


def test_phase_durations_over_a_reconciled_run(minimal_society):
    """Driven by the real state machine, so the times the reconciler stamps are the ones read."""
    minimal_society["spec"]["finetune"] = {"iterations": 1}
    world = World(minimal_society)
    metrics = OperatorMetrics(clock=lambda: world.now)

    def step(minutes: float) -> None:
        world.reconcile(minutes)
        metrics.society_status("research", "minimal", world.status)

    step(1)  # Serving
    world.servers_ready()
    step(5)  # Debating, 5 minutes after Serving began
    world.finish("minimal-debate-it0", debate_summary(0.5))
    step(20)  # Training
    for name in [n for n in world.jobs if "-train-" in n]:
        world.finish(name)
    step(60)  # Serving iteration 1
    world.servers_ready()
    step(3)  # Debating
    world.finish("minimal-debate-it1", debate_summary(0.6))
    step(10)  # Succeeded
    assert world.status.phase == "Succeeded"

    samples = scrape(metrics)
    durations = {
        phase: (
            value(
                samples,
                "society_phase_duration_seconds_count",
                namespace="research",
                society="minimal",
                phase=phase,
            ),
            value(
                samples,
                "society_phase_duration_seconds_sum",
                namespace="research",
                society="minimal",
                phase=phase,
            ),
        )
        for phase in ("Serving", "Debating", "Training")
    }
    assert durations == {
        "Serving": (2, 5 * 60 + 3 * 60),
        "Debating": (2, 20 * 60 + 10 * 60),
        "Training": (1, 60 * 60),
    }


def test_a_phase_begun_before_the_operator_started_counts_only_where_the_status_dates_it():
    """After a restart or failover the store is empty: a Debating phase is dated by its
    iteration's startTime, a Serving phase of a later iteration is not dated at all."""
    now = [T0 + timedelta(hours=2)]
    metrics = OperatorMetrics(clock=lambda: now[0])
    debating = IterationStatus(iteration=1, startTime=T0 + timedelta(hours=1))
    progressing = condition("Progressing", "True", T0)
    first = SocietyStatus(
        phase="Debating", iteration=1, iterations=[debating], conditions=[progressing]
    )
    metrics.society_status("research", "a", first)
    serving = SocietyStatus(phase="Serving", iteration=1, conditions=[progressing])
    metrics.society_status("research", "b", serving)

    now[0] += timedelta(minutes=30)
    done = IterationStatus(iteration=1, startTime=debating.startTime, completionTime=now[0])
    metrics.society_status(
        "research", "a", first.model_copy(update={"phase": "Training", "iterations": [done]})
    )
    metrics.society_status("research", "b", serving.model_copy(update={"phase": "Debating"}))

    samples = scrape(metrics)
    a = dict(namespace="research", society="a", phase="Debating")
    assert value(samples, "society_phase_duration_seconds_sum", **a) == 90 * 60
    assert series(samples, "society_phase_duration_seconds_count", society="b") == []


def test_a_resume_dates_the_running_phase_from_the_progressing_condition():
    now = [T0 + timedelta(hours=1)]
    metrics = OperatorMetrics(clock=lambda: now[0])
    debating = IterationStatus(iteration=0, startTime=T0)
    suspended = SocietyStatus(
        phase="Suspended",
        iterations=[debating],
        conditions=[
            condition("Suspended", "True", T0 + timedelta(minutes=10)),
            condition("Progressing", "False", T0 + timedelta(minutes=10)),
        ],
    )
    metrics.society_status("research", "phi3", suspended)
    resumed_at = T0 + timedelta(hours=1)
    resumed = suspended.model_copy(
        update={
            "phase": "Debating",
            "conditions": [
                condition("Suspended", "False", resumed_at),
                condition("Progressing", "True", resumed_at),
            ],
        }
    )
    metrics.society_status("research", "phi3", resumed)
    samples = scrape(metrics)
    assert (
        value(samples, "society_phase_duration_seconds_sum", **SOCIETY, phase="Suspended")
        == 50 * 60
    )

    now[0] += timedelta(minutes=7)
    metrics.society_status("research", "phi3", resumed.model_copy(update={"phase": "Failed"}))
    samples = scrape(metrics)
    assert (
        value(samples, "society_phase_duration_seconds_sum", **SOCIETY, phase="Debating") == 7 * 60
    )


def test_reconcile_duration_and_errors():
    metrics = OperatorMetrics()
    metrics.reconciled(0.02, error=False)
    metrics.reconciled(3.0, error=True)
    samples = scrape(metrics)
    assert value(samples, "society_reconcile_duration_seconds_count") == 2
    assert value(samples, "society_reconcile_duration_seconds_sum") == pytest.approx(3.02)
    assert value(samples, "society_reconcile_duration_seconds_bucket", le="0.025") == 1
    assert value(samples, "society_reconcile_errors_total") == 1


def test_job_failures_take_only_the_known_roles():
    metrics = OperatorMetrics()
    with pytest.raises(ValueError, match="unknown Job role"):
        metrics.job_failed("research", "phi3", "vllm")


def test_a_replica_that_stops_leading_stops_exporting_statuses():
    metrics = OperatorMetrics()
    metrics.leading(True)
    metrics.society_status("research", "phi3", SocietyStatus(phase="Serving"))
    assert value(scrape(metrics), "society_operator_leader") == 1
    metrics.leading(False)
    samples = scrape(metrics)
    assert value(samples, "society_operator_leader") == 0
    assert series(samples, "society_phase") == []


def test_served_over_http():
    metrics = OperatorMetrics()
    metrics.society_status("research", "phi3", SocietyStatus(phase="Serving", iteration=2))
    server = metrics.serve(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.stop()
    assert 'society_iteration{namespace="research",society="phi3"} 2.0' in text
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=1)


def test_phase_durations_read_as_prometheus_clients_own_histogram_would():
    """They are kept as bare counts per Society and phase (a labelled Histogram costs 4 KB
    each); what Prometheus reads is the same, bucket bounds included."""
    observed = [0.0, 5, 10, 10.5, 59.9, 60, 3600, 86400, 200000]
    reference = CollectorRegistry()
    histogram = Histogram(
        "society_phase_duration_seconds",
        "Time a Society spent in a phase, observed when it leaves the phase.",
        ["namespace", "society", "phase"],
        buckets=PHASE_BUCKETS,
        registry=reference,
    )
    durations = _Durations()
    for seconds in observed:
        histogram.labels("ns", "s", "Serving").observe(seconds)
        durations.observe(seconds)
    ours = CollectorRegistry()
    key = ("ns", "s", "Serving")
    ours.register(_DurationCollector(lambda: [(key, durations.counts, durations.total)]))

    def samples(registry: CollectorRegistry) -> set:
        text = generate_latest(registry).decode()
        return {
            (s.name, frozenset(s.labels.items()), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours) == samples(reference)
