"""The artifact claim: every step of a Society mounts the same ReadWriteMany volume."""

from __future__ import annotations

from typing import Any

from ..api import Society
from ..settings import Settings
from .names import claim_name, metadata


def build_claim(society: Society, settings: Settings) -> dict[str, Any] | None:
    """The claim the operator creates, or None when the Society names an existing one. Only a
    claim the Society may delete (whenDeleted: Delete) is owned by it, so Retain survives."""
    storage = society.spec.storage
    if storage.claimName:
        return None
    meta = metadata(society, claim_name(society), "artifacts")
    if storage.whenDeleted == "Retain":
        del meta["ownerReferences"]
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": str(storage.size or settings.default_claim_size)}},
    }
    if storage.storageClassName:
        spec["storageClassName"] = storage.storageClassName
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": spec}
