"""The status conditions (Ready, Progressing, Failed, Suspended) and the phase they follow, and
the two verdicts made without reconciling: an invalid spec, and a failed run retried."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..api import Society
from ..api.kube import Condition, ConditionType
from ..api.status import Phase, SocietyStatus
from ..api.validation import Problem
from .plan import Event, Plan

FINAL_PHASES = ("Succeeded", "Failed")


def is_final(society: Society) -> bool:
    """Failed, or Succeeded with no iteration left: Succeeded is final only until
    finetune.iterations is raised."""
    status = society.status or SocietyStatus()
    return status.phase == "Failed" or (
        status.phase == "Succeeded" and status.iteration >= society.spec.finetune.iterations
    )


def set_condition(
    status: SocietyStatus,
    kind: ConditionType,
    value: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> None:
    """Update one condition; lastTransitionTime changes only when its status does."""
    new = "True" if value else "False"
    index = next((i for i, c in enumerate(status.conditions) if c.type == kind), None)
    old = None if index is None else status.conditions[index]
    condition = Condition(
        type=kind,
        status=new,
        reason=reason,
        message=message,
        observedGeneration=generation,
        lastTransitionTime=old.lastTransitionTime if old and old.status == new else now,
    )
    if index is None:
        status.conditions.append(condition)
    else:
        status.conditions[index] = condition


def set_phase(
    status: SocietyStatus,
    phase: Phase,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> None:
    """The phase, and the four conditions that say the same for automation."""
    status.phase = phase
    final = phase in FINAL_PHASES
    set_condition(status, "Ready", phase == "Succeeded", reason, message, generation, now)
    set_condition(status, "Failed", phase == "Failed", reason, message, generation, now)
    set_condition(status, "Suspended", phase == "Suspended", reason, message, generation, now)
    running = not final and phase != "Suspended"
    set_condition(status, "Progressing", running, reason, message, generation, now)
    if final and status.completionTime is None:
        status.completionTime = now


def reconcile_invalid(body: dict[str, Any], problems: Iterable[Problem], now: datetime) -> Plan:
    """A Society the schema let through but the models reject (e.g. a CRD older than the
    operator): Failed, quoting the same lines `society validate` prints."""
    try:
        status = SocietyStatus.model_validate(body.get("status") or {})
    except ValueError:
        status = SocietyStatus()
    message = "invalid spec: " + "; ".join(str(p) for p in problems)
    generation = body["metadata"].get("generation")
    status.observedGeneration = generation
    set_phase(status, "Failed", "InvalidSpec", message, generation, now)
    return Plan(status=status, events=[Event("InvalidSpec", message, "Warning")])


def retry_failed(status: SocietyStatus) -> SocietyStatus:
    """A Failed run made to go on from its failed step: what deleting the failed Job does on a
    cluster. `society run` does this when it is run again after a failure."""
    if status.phase != "Failed":
        return status
    return status.model_copy(update={"phase": None, "completionTime": None})
