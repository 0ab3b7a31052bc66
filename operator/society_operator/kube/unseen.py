"""The children this process made that its watch caches do not show yet.

The watch is often a moment behind a create, and a reconcile woken meanwhile (by a pod's event,
say) would not see the child and send its create again, to be answered 409 Conflict: at 100
Societies on the real control plane, up to 0.8 such creates per Society iteration
(bench/operator_scale.py). A reconcile skips the creates of children made in the last
UNSEEN_SECONDS that the watch has not shown; once it shows one, the child is forgotten here, so
that a later delete is seen as one, and one the watch never shows is asked for again in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# The watched children's kinds and their watch caches (handlers.CHILD_RESOURCES' plurals).
WATCHED = {
    "Job": "jobs",
    "Deployment": "deployments",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
}
# Longer than the watch's lag behind a create, short enough that a child deleted before the
# watch ever showed it is soon made anew.
UNSEEN_SECONDS = 30.0


class Unseen:
    """One Society's children made and not yet seen: (kind, name) -> when made."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._made: dict[tuple[str, str], float] = {}

    def made(self, kind: str, name: str) -> None:
        if kind in WATCHED:
            self._made[(kind, name)] = self._clock()

    def deleted(self, kind: str, name: str) -> None:
        """A delete sent: a create of the name that follows is a new child's."""
        self._made.pop((kind, name), None)

    def __contains__(self, child: tuple[str, str]) -> bool:
        return child in self._made

    def forget_seen(self, cached: Callable[[str], list[dict[str, Any]]]) -> None:
        """Forget what the watch caches (`cached(plural)`) now show, and what they have not
        shown in UNSEEN_SECONDS."""
        if not self._made:
            return
        seen = {
            (kind, child["metadata"]["name"])
            for kind, plural in WATCHED.items()
            for child in cached(plural)
        }
        now = self._clock()
        for child in [c for c, at in self._made.items() if c in seen or now - at > UNSEEN_SECONDS]:
            del self._made[child]
