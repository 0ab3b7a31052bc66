"""What one reconcile decides: children to create and delete, scale and suspend changes, the
new status, and the Events to post once that status is written."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from ..api.status import SocietyStatus
from ..build.child import Child

JobRole = Literal["debate", "generation", "critic"]
# Events that end a step of an iteration: the phase change that follows in the same reconcile
# is said in them (Plan.say).
STEP_REASONS = ("IterationEvaluated", "IterationTrained")


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"
    job: str | None = None  # the Job it is about, for a JobFailed
    role: JobRole | None = None  # what that Job was doing, for the failure counter


@dataclass
class Plan:
    create: list[Child] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    scale: dict[str, int] = field(default_factory=dict)  # Deployment name -> replicas
    suspend_jobs: dict[str, bool] = field(default_factory=dict)  # Job name -> spec.suspend
    # Job name -> its Kueue Workload's spec.active (with spec.queueName, Kueue owns spec.suspend)
    queue_active: dict[str, bool] = field(default_factory=dict)
    status: SocietyStatus = field(default_factory=SocietyStatus)
    events: list[Event] = field(default_factory=list)

    def say(self, event: Event) -> None:
        """Add a phase change's Event. One that follows a step's Event in the same reconcile
        (IterationEvaluated, then Training; IterationTrained, then ServersStarting) is said in
        it, as one Event: each is a request to the apiserver, and the two say one step.
        Warnings and Succeeded stand alone."""
        last = self.events[-1] if self.events else None
        if (
            last is not None
            and last.reason in STEP_REASONS
            and event.type == "Normal"
            and event.reason != "Succeeded"
        ):
            self.events[-1] = replace(last, message=f"{last.message}; {event.message}")
        else:
            self.events.append(event)
