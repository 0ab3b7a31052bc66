"""The cluster as the reconciler sees it, played on one machine and kept on disk.

A Deployment (a vLLM server) is ready as soon as it is created: no server runs, because each
debate generates in-process. Deletions and scaling take effect at once. Jobs are handed back to
the runner, which runs them and records each as it finishes (records.JobRecord).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from ..build.child import Child
from ..build.names import LABEL_ITERATION
from ..core.observed import Observed, ObservedServer
from ..core.plan import Plan
from .process import LocalRunError
from .records import JobRecord, read_state, write_atomically


@dataclass
class LocalCluster:
    root: Path  # <artifacts>/<society name>
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    servers: dict[str, ObservedServer] = field(default_factory=dict)

    @property
    def claim(self) -> bool:
        """The artifact claim is the run's directory: there after the first run, kept by reruns."""
        return self.root.is_dir()

    @property
    def jobs_file(self) -> Path:
        return self.root / "jobs.json"

    @classmethod
    def load(cls, root: Path) -> LocalCluster:
        cluster = cls(root)
        if cluster.jobs_file.exists():
            saved = read_state(cluster.jobs_file)
            try:
                for record in saved.values():  # written by 0.1.0 as "finished"
                    if "finished" in record:
                        record["finished_at"] = record.pop("finished")
                cluster.jobs = {name: JobRecord(**record) for name, record in saved.items()}
            except (AttributeError, TypeError) as error:
                raise LocalRunError(
                    f"{cluster.jobs_file}: not this run's record of Jobs ({error}); delete the "
                    "directory to start over, or use another --artifacts directory"
                ) from None
        return cluster

    def save(self) -> None:
        jobs = {name: asdict(record) for name, record in self.jobs.items()}
        write_atomically(self.jobs_file, json.dumps(jobs, indent=2) + "\n")

    def observed(self) -> Observed:
        return Observed(
            jobs={name: record.observed(name) for name, record in self.jobs.items()},
            servers=dict(self.servers),
            claim=self.claim,
        )

    def apply(self, plan: Plan, now: datetime) -> list[Child]:
        """Everything in the plan but its Jobs takes effect at once; the Jobs are returned."""
        for kind, name in plan.delete:
            if kind == "Deployment":
                self.servers.pop(name, None)
            elif kind == "Job":
                self.jobs.pop(name, None)
        for name, replicas in plan.scale.items():
            if name in self.servers:
                server = self.servers[name]
                self.servers[name] = ObservedServer(
                    name, server.iteration, replicas, bool(replicas), server.created
                )
        jobs = []
        for child in plan.create:
            if child.kind == "Deployment":
                replicas = child.body["spec"]["replicas"]
                iteration = int(child.labels[LABEL_ITERATION])
                self.servers[child.name] = ObservedServer(
                    child.name, iteration, replicas, bool(replicas), now
                )
            elif child.kind == "PersistentVolumeClaim":
                self.root.mkdir(parents=True, exist_ok=True)
            elif child.kind == "Job":
                jobs.append(child)
        return jobs
