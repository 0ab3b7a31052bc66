"""`society run`: a Society's whole lifecycle on this machine, decided by the operator's own
reconciler (core/), with each Job run as a local subprocess.

    records.py   what the run keeps on disk: finished Jobs (jobs.json), written atomically
    cluster.py   the stand-in for the apiserver, the kubelet and the Job controller
    jobs.py      one Job of a Plan as a local process: its step config pointed at this machine
    process.py   running and stopping `society-trainer` subprocesses
    runner.py    the loop: reconcile, apply, run the Plan's Jobs, persist, until done
    report.py    progress bars, per-Job lines and the final table of iterations
"""

from .jobs import LocalJob
from .records import JobRecord
from .runner import LocalRun, LocalRunError, Progress

__all__ = ["JobRecord", "LocalJob", "LocalRun", "LocalRunError", "Progress"]
