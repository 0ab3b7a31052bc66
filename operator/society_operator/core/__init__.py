"""The operator's decisions, pure: what is observed, the state machine, and the Plan it returns.

No I/O here. `kube/` feeds it from the apiserver's watch caches and applies its Plans; `local/`
feeds it from a run directory and runs its Jobs as subprocesses (`society run`).
"""
