"""Which events of a Society's children can change what its reconcile decides.

The watch caches keep of each child only what `core/observe.py` reads (`observe.project`), and
a reconcile decides from those projections alone (and the Society, and the clock, which the
resync covers). Some events of a child leave its projection as it was -- a pod bound to a node
or annotated, a finalizer removed, a Job's `ready` count, a Deployment's `observedGeneration` --
and reconciling after them decides the same again: 22 % of the children's events in a run of
`bench/operator_scale.py --societies 100` (1536 of 6850), each a reconcile in the event loop
ahead of the events that mattered. So the index function wakes the Society only when the
projection it returns differs from the one the child's previous event left (handlers.py). A
child's first event always wakes it, and so does its deletion (handlers.py says which).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

# Where a child's last projection is kept: in kopf's memo of that one object, which kopf makes
# at the object's first event and drops at its deletion. It is the very object the index holds,
# so this costs a reference per child, not a copy.
_LAST = "society_operator.projected"


def changed(memo: MutableMapping[str, Any], projected: Any) -> bool:
    """Whether a child's new projection differs from its last (or is its first); it becomes
    the last. `memo`: kopf's memo of the child."""
    last = memo.get(_LAST)
    memo[_LAST] = projected
    return last != projected
