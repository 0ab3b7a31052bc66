"""The operator's Prometheus metrics, served on /metrics.

Two kinds of values, exported two ways:

- What a Society's status holds (phase, iteration, per-iteration results, GPU-seconds) is the
  operator's latest reading of that Society. It is exported by a collector over a store of the
  latest statuses, computed at scrape time, so a deleted Society's series disappear with it and
  a replica that stops leading stops exporting them.
- What happens (phase transitions, Job failures, reconcile calls) is counted with ordinary
  counters and histograms. The per-Society ones are removed when the Society is deleted.

Cardinality is bounded: per Society, the per-iteration series (accuracy, stderr, consensus,
diversity, dataset sizes) cover only its latest `iteration_window` evaluated iterations (10 by
default; `finetune.iterations` may be up to 100), dataset sizes add agent and role (at most
2 x agents per iteration), and phase series take the seven phases. The reconcile metrics carry no
labels at all.

Names follow Prometheus conventions: the `society_` prefix, base units (`_seconds`), `_total`
on counters, `_ratio` on fractions in [0, 1].
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..api.status import IterationStatus, Phase, SocietyStatus

PHASES: tuple[str, ...] = get_args(Phase)
JOB_ROLES = ("debate", "generation", "critic")
DEFAULT_ITERATION_WINDOW = 10
SOCIETY_LABELS = ("namespace", "society")

# Phases last from seconds (a Job that fails at once) to a day (a large debate or full finetune).
PHASE_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400, 172800)
# A reconcile is a few API calls; seconds means a slow or throttled apiserver.
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class _Evaluated:
    """One evaluated iteration's exported values."""

    iteration: int
    accuracy: float | None
    accuracy_stderr: float | None
    consensus: float | None
    diversity: float | None
    datasets: tuple[tuple[int, str, int], ...]  # (agent, role, examples)


@dataclass(frozen=True, slots=True)
class _Reading:
    """The exported part of a Society's status: a few numbers, not the status itself (a copy
    of the whole status was 8 KB per Society)."""

    phase: str | None
    iteration: int
    gpu_seconds: float
    evaluated: tuple[_Evaluated, ...]  # the latest `iteration_window`, by iteration

    @classmethod
    def of(cls, status: SocietyStatus, window: int) -> _Reading:
        evaluated = sorted(
            (it for it in status.iterations if it.completionTime is not None),
            key=lambda it: it.iteration,
        )
        return cls(
            status.phase,
            status.iteration,
            status.gpuSeconds,
            tuple(
                _Evaluated(
                    it.iteration,
                    it.accuracy,
                    it.accuracyStderr,
                    it.consensus,
                    it.diversity,
                    tuple((d.agent, d.role, d.examples) for d in it.datasets),
                )
                for it in evaluated[-window:]
            ),
        )


@dataclass(frozen=True, slots=True)
class _Known:
    """What the store keeps per Society: its latest reading and when its phase began."""

    reading: _Reading
    phase_entered: datetime | None  # None: began before this process saw it, time unrecorded


class MetricsServer:
    """The /metrics HTTP server running in a background thread."""

    def __init__(self, port: int, addr: str, registry: CollectorRegistry):
        self._server, self._thread = start_http_server(port, addr, registry=registry)

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose when asked for port 0)."""
        return self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class OperatorMetrics:
    """The metrics of one operator process. The handlers report to it; /metrics reads it."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        iteration_window: int = DEFAULT_ITERATION_WINDOW,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.registry = CollectorRegistry() if registry is None else registry
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], _Known] = {}
        self._window = iteration_window
        self.registry.register(_StatusCollector(self._snapshot))
        # Per Society and phase, kept as bare counts (_Durations): a labelled Histogram of
        # prometheus_client keeps an object and a lock per bucket, 4 KB per Society and phase.
        self._durations: dict[tuple[str, str, str], _Durations] = {}
        self.registry.register(_DurationCollector(self._duration_snapshot))
        self._job_failures = Counter(
            "society_job_failures",
            "Jobs of a Society that failed past their backoffLimit, by role.",
            [*SOCIETY_LABELS, "role"],
            registry=self.registry,
        )
        self._reconcile_duration = Histogram(
            "society_reconcile_duration_seconds",
            "Time one reconcile of a Society took, API calls included.",
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self._reconcile_errors = Counter(
            "society_reconcile_errors",
            "Reconciles that raised an error (kopf retries them).",
            registry=self.registry,
        )
        self._leader = Gauge(
            "society_operator_leader",
            "1 while this replica holds the leader Lease and acts; 0 while it stands by.",
            registry=self.registry,
        )

    # --- what the handlers call -----------------------------------------------------------------

    def society_status(self, namespace: str, name: str, status: SocietyStatus) -> None:
        """Record a Society's status after a reconcile. A phase change observes the duration
        of the phase it left."""
        reading = _Reading.of(status, self._window)
        key = (namespace, name)
        with self._lock:
            previous = self._known.get(key)
            if previous is None:
                entered = _recorded_entry(status)
            elif previous.reading.phase == status.phase:
                entered = previous.phase_entered
            else:
                entered = _recorded_entry(status) or self._clock()
                left = previous.reading.phase
                if left is not None and previous.phase_entered is not None:
                    seconds = (entered - previous.phase_entered).total_seconds()
                    durations = self._durations.setdefault((namespace, name, left), _Durations())
                    durations.observe(max(0.0, seconds))
            self._known[key] = _Known(reading, entered)

    def society_deleted(self, namespace: str, name: str) -> None:
        """Forget a Society: its status series and its per-Society counters go."""
        with self._lock:
            self._known.pop((namespace, name), None)
            for phase in PHASES:
                self._durations.pop((namespace, name, phase), None)
            for role in JOB_ROLES:
                self._job_failures.remove(namespace, name, role)

    def job_failed(self, namespace: str, name: str, role: str) -> None:
        """A Job of the Society failed past its backoffLimit; role: debate, generation or
        critic."""
        if role not in JOB_ROLES:
            raise ValueError(f"unknown Job role {role!r}; expected one of {JOB_ROLES}")
        self._job_failures.labels(namespace, name, role).inc()

    def reconciled(self, seconds: float, error: bool) -> None:
        self._reconcile_duration.observe(seconds)
        if error:
            self._reconcile_errors.inc()

    def leading(self, leader: bool) -> None:
        """Leader election changed. A replica that stops leading stops exporting statuses, which
        the new leader now reports (two replicas must not both export a Society)."""
        self._leader.set(1 if leader else 0)
        if not leader:
            with self._lock:
                self._known.clear()

    def serve(self, port: int, addr: str = "0.0.0.0") -> MetricsServer:
        """Serve /metrics in a background thread; `.stop()` the returned server to end it."""
        return MetricsServer(port, addr, self.registry)

    # --- for the collector ----------------------------------------------------------------------

    def _snapshot(self) -> list[tuple[str, str, _Reading]]:
        with self._lock:
            return [(ns, name, known.reading) for (ns, name), known in self._known.items()]

    def _duration_snapshot(self) -> list[tuple[tuple[str, str, str], list[int], float]]:
        with self._lock:
            return [(key, list(d.counts), d.total) for key, d in self._durations.items()]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _recorded_entry(status: SocietyStatus) -> datetime | None:
    """When the current phase began, where the status records it (the reconciler stamps these
    in the same reconcile that changes the phase); None where it does not.

    - Suspended: the Suspended condition's lastTransitionTime.
    - Debating: the iteration's startTime; Training: the debate's completionTime (training
      starts in the reconcile that reads the debate's results); Serving iteration 0: the run's
      startTime. A resume after a suspend re-enters a running phase, which the Progressing
      condition's lastTransitionTime marks, so the later of the two counts.
    """
    conditions = {c.type: c for c in status.conditions if c.status == "True"}
    if status.phase == "Suspended" and "Suspended" in conditions:
        return _utc(conditions["Suspended"].lastTransitionTime)
    current = _iteration(status, status.iteration)
    recorded = {
        "Debating": current.startTime if current else None,
        "Training": current.completionTime if current else None,
        "Serving": status.startTime if status.iteration == 0 else None,
    }.get(status.phase or "")
    if recorded is None:
        return None
    resumed = conditions.get("Progressing")
    times = [_utc(recorded)] + ([_utc(resumed.lastTransitionTime)] if resumed else [])
    return max(times)


def _iteration(status: SocietyStatus, iteration: int) -> IterationStatus | None:
    return next((it for it in status.iterations if it.iteration == iteration), None)


@dataclass(slots=True)
class _Durations:
    """One Society's times in one phase, as a histogram: how many fell in each of PHASE_BUCKETS
    (and above the last), and their sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(PHASE_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(PHASE_BUCKETS, seconds)] += 1  # the first bucket >= it
        self.total += seconds


class _DurationCollector(Collector):
    """Exports society_phase_duration_seconds from the stored counts at scrape time."""

    def __init__(self, snapshot: Callable[[], list[tuple[tuple[str, str, str], list[int], float]]]):
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        bounds = [str(float(b)) for b in PHASE_BUCKETS] + ["+Inf"]
        for labels, counts, total in self._snapshot():
            cumulative = itertools.accumulate(counts)
            family.add_metric(list(labels), list(zip(bounds, cumulative, strict=True)), total)
        return [family]

    @staticmethod
    def _family() -> HistogramMetricFamily:
        return HistogramMetricFamily(
            "society_phase_duration_seconds",
            "Time a Society spent in a phase, observed when it leaves the phase.",
            labels=[*SOCIETY_LABELS, "phase"],
        )


class _StatusCollector(Collector):
    """Exports the stored readings at scrape time."""

    def __init__(self, snapshot: Callable[[], list[tuple[str, str, _Reading]]]):
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return list(_Families())

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        for namespace, name, reading in self._snapshot():
            self._add(families, namespace, name, reading)
        return list(families)

    def _add(self, families: _Families, namespace: str, name: str, reading: _Reading) -> None:
        society = [namespace, name]
        for phase in PHASES:
            families.phase.add_metric([*society, phase], 1.0 if reading.phase == phase else 0.0)
        families.iteration.add_metric(society, reading.iteration)
        families.gpu_seconds.add_metric(society, reading.gpu_seconds)
        for it in reading.evaluated:
            labels = [*society, str(it.iteration)]
            for family, value in (
                (families.accuracy, it.accuracy),
                (families.accuracy_stderr, it.accuracy_stderr),
                (families.consensus, it.consensus),
                (families.diversity, it.diversity),
            ):
                if value is not None:
                    family.add_metric(labels, value)
            for agent, role, examples in it.datasets:
                families.dataset.add_metric([*labels, str(agent), role], examples)


class _Families:
    """One scrape's families of status metrics, empty until filled."""

    def __init__(self) -> None:
        iteration = [*SOCIETY_LABELS, "iteration"]
        self.phase = GaugeMetricFamily(
            "society_phase",
            "1 for the phase a Society is in, 0 for the others.",
            labels=[*SOCIETY_LABELS, "phase"],
        )
        self.iteration = GaugeMetricFamily(
            "society_iteration",
            "The iteration under way (or finished, once Succeeded).",
            labels=list(SOCIETY_LABELS),
        )
        self.gpu_seconds = CounterMetricFamily(
            "society_gpu_seconds",
            "GPU-seconds used so far, summed over every pod of the Society that requested GPUs.",
            labels=list(SOCIETY_LABELS),
        )
        self.accuracy = GaugeMetricFamily(
            "society_eval_accuracy_ratio",
            "Debate accuracy on the evaluation problems, per evaluated iteration.",
            labels=iteration,
        )
        self.accuracy_stderr = GaugeMetricFamily(
            "society_eval_accuracy_stderr_ratio",
            "Standard error of the accuracy, sqrt(p(1-p)/n).",
            labels=iteration,
        )
        self.consensus = GaugeMetricFamily(
            "society_consensus_ratio",
            "Mean fraction of agents whose final answer is the majority answer.",
            labels=iteration,
        )
        self.diversity = GaugeMetricFamily(
            "society_diversity",
            "Mean dissimilarity between different agents' responses.",
            labels=iteration,
        )
        self.dataset = GaugeMetricFamily(
            "society_dataset_examples",
            "Finetuning examples an iteration's debate gave one agent in one role.",
            labels=[*iteration, "agent", "role"],
        )

    def __iter__(self) -> Iterator[Metric]:
        return iter(vars(self).values())
