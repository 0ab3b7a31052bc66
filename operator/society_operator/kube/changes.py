"""Which events of a Society's children can change what its reconcile decides.

The watch caches keep of each child only what `core/observe.py` reads (`observe.project`), and
a reconcile decides from those projections alone (and the Society, and the clock, which the
resync covers). Some events of a child leave its projection as it was -- a pod bound to a node
or annotated, a finalizer removed, a Job's `ready` count, a Deployment's `observedGeneration` --
and reconciling after them decides the same again: 22 % of the children's events in a run of
`bench/operator_scale.py --societies 100` (1536 of 6850), each a reconcile in the event loop
ahead of the events that mattered. So the index function notes whether the projection changed,
and the event handler, which kopf calls after the indexes are updated, wakes the Society only
then. A child's first event and its deletion always change it.
"""

from __future__ import annotations

from typing import Any


class ChildChanges:
    def __init__(self) -> None:
        # Child uid -> its projection as last indexed: the very object the index holds, so
        # this costs a dict entry per child, not a copy.
        self._indexed: dict[str, Any] = {}
        self._changed: set[str] = set()

    def indexed(self, uid: str, projected: Any) -> None:
        """The index function saw this child's new projection."""
        if self._indexed.get(uid) != projected:
            self._changed.add(uid)
        self._indexed[uid] = projected

    def changed(self, uid: str, deleted: bool = False) -> bool:
        """Whether this event (the one just indexed) changed the child; asked once per event."""
        if deleted:
            self._indexed.pop(uid, None)
            self._changed.discard(uid)
            return True
        if uid in self._changed:
            self._changed.discard(uid)
            return True
        return False
