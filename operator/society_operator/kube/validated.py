"""What the controller derives from each Society and keeps between its reconciles.

Every event of a child wakes its Society, so one Society is reconciled many times per version:
- its validated model, once per version (uid, resourceVersion): validating at each reconcile
  was a tenth of the operator's time. Kept only while the Society runs: a finished one is
  reconciled about once a resync, and each model is some 24 KB (1000 finished Societies:
  24 MiB);
- its iterations' desired children (`build.desired.Desired`), once per spec (uid, generation):
  they depend on the spec alone, and building them at each reconcile (the Jobs' step configs
  above all) was a fifth of the event loop's time at 400 Societies (py-spy,
  bench/operator_scale.py).
"""

from __future__ import annotations

from typing import Any

from ..api import Society
from ..api.validation import Checked, check_society
from ..build.desired import Desired
from ..core.status import FINAL_PHASES

Key = tuple[str, str]  # (namespace, society name)


class Validated:
    def __init__(self) -> None:
        self._checked: dict[Key, tuple[tuple[str, str], Checked]] = {}
        self._built: dict[Key, tuple[tuple[str | None, int | None], dict[int, Desired]]] = {}

    def check(self, key: Key, body: dict[str, Any]) -> Checked:
        """check_society(body), or what it said for this version before."""
        meta = body["metadata"]
        version = (meta.get("uid", ""), meta.get("resourceVersion", ""))
        last = self._checked.get(key)
        if last is not None and last[0] == version and version[1]:
            return last[1]
        checked = check_society(body)
        self._checked.pop(key, None)
        if (body.get("status") or {}).get("phase") in FINAL_PHASES:
            self._built.pop(key, None)
        else:
            self._checked[key] = (version, checked)
        return checked

    def built(self, key: Key, society: Society) -> dict[int, Desired]:
        """The reconciler's Desired per iteration, for this Society's spec: the reconciler fills
        it (core.reconciler.reconcile's `built`)."""
        spec = (society.metadata.uid, society.metadata.generation)
        kept = self._built.get(key)
        if kept is None or kept[0] != spec:
            kept = self._built[key] = (spec, {})
        return kept[1]

    def forget(self, key: Key) -> None:
        self._checked.pop(key, None)
        self._built.pop(key, None)
